import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { IntegrityError, KEY_BYTES, NONCE_BYTES, TAG_BYTES, encodeFields, open, seal, type Sealed } from '../../src/crypto/aead';
import { EncryptionContext, KeyProvider, KeyUnavailableError, ProviderDescription, WrappedKey } from '../../src/crypto/key-provider';
import { LocalKeyProvider, MasterKeyring } from '../../src/crypto/local-key-provider';
import { KeyManager, context } from '../../src/keys/key-manager';
import { SqliteStore } from '../../src/store/sqlite-store';
import { valueAad } from '../../src/service/record-crypto';
import { caught } from '../helpers/caught';
import { withTempStore } from '../helpers/temp-store';

// ---------------------------------------------------------------- helpers

const hex = (s: string) => Buffer.from(s, 'hex');

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

function flipBit(buf: Buffer, bit: number): Buffer {
  const copy = Buffer.from(buf);
  copy[bit >> 3] ^= 1 << (bit & 7);
  return copy;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wraps a LocalKeyProvider through its public methods and counts the calls that reach it. */
class CountingProvider extends KeyProvider {
  unwraps = 0;
  generates = 0;
  wraps = 0;

  constructor(private readonly inner: KeyProvider) {
    super();
  }

  override describe(): ProviderDescription {
    return this.inner.describe();
  }

  override owns(kekId: string): boolean {
    return this.inner.owns(kekId);
  }

  override healthy(): Promise<boolean> {
    return this.inner.healthy();
  }

  protected override async _generateDataKey(ctx: EncryptionContext) {
    this.generates++;
    return this.inner.generateDataKey(ctx);
  }

  protected override async _wrap(plaintext: Buffer, ctx: EncryptionContext): Promise<WrappedKey> {
    this.wraps++;
    return this.inner.wrap(plaintext, ctx);
  }

  protected override async _unwrap(wrapped: WrappedKey, ctx: EncryptionContext): Promise<Buffer> {
    this.unwraps++;
    return this.inner.unwrap(wrapped, ctx);
  }
}

/** A broken backend that returns keys of the wrong size, to exercise the base-class postconditions. */
class ShortKeyProvider extends KeyProvider {
  override describe(): ProviderDescription {
    return { kind: 'short', kekId: 'short:v1' };
  }
  override owns(kekId: string): boolean {
    return kekId === 'short:v1';
  }
  override async healthy(): Promise<boolean> {
    return true;
  }
  protected override async _generateDataKey() {
    return { plaintext: Buffer.alloc(16), wrapped: { kekId: 'short:v1', blob: Buffer.alloc(16) } };
  }
  protected override async _wrap(): Promise<WrappedKey> {
    return { kekId: 'short:v1', blob: Buffer.alloc(16) };
  }
  protected override async _unwrap(): Promise<Buffer> {
    return Buffer.alloc(KEY_BYTES + 1);
  }
}

const CTX: EncryptionContext = { tenant: 'default', purpose: 'data', version: '1' };

// ---------------------------------------------------------------- aead

describe('crypto / aead', () => {
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
  const aad = Buffer.from('row:default/pan/tok_1/1', 'utf8');

  it('seal then open returns the plaintext, for empty, short and large values', () => {
    for (const plaintext of [Buffer.alloc(0), Buffer.from('4111111111111111'), randomBytes(64 * 1024)]) {
      const sealed = seal(key, plaintext, aad);
      expect(open(key, sealed, aad).equals(plaintext)).to.equal(true);
    }
  });

  it('Postcondition: a sealed value has a 96-bit nonce, a 128-bit tag and a ciphertext as long as the plaintext', () => {
    const sealed = seal(key, Buffer.from('hello world'), aad);
    expect(sealed.nonce.length).to.equal(NONCE_BYTES).and.to.equal(12);
    expect(sealed.tag.length).to.equal(TAG_BYTES).and.to.equal(16);
    expect(sealed.ciphertext.length).to.equal(11);
  });

  it('the ciphertext never contains the plaintext', () => {
    const plaintext = Buffer.from('4111111111111111'.repeat(8));
    const sealed = seal(key, plaintext, aad);
    expect(sealed.ciphertext.includes(Buffer.from('4111111111111111'))).to.equal(false);
  });

  it('every seal uses a fresh nonce: 10,000 seals of one value give 10,000 distinct nonces and ciphertexts', () => {
    const plaintext = Buffer.from('4111111111111111');
    const nonces = new Set<string>();
    const ciphertexts = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const s = seal(key, plaintext, aad);
      nonces.add(s.nonce.toString('hex'));
      ciphertexts.add(s.ciphertext.toString('hex'));
    }
    expect(nonces.size).to.equal(10_000);
    expect(ciphertexts.size).to.equal(10_000);
  });

  describe('any single flipped bit makes open throw IntegrityError', () => {
    const plaintext = Buffer.from('a value of thirty-two bytes!!!!!');
    let sealed: Sealed;
    before(() => {
      sealed = seal(key, plaintext, aad);
    });

    const expectIntegrityError = (s: Sealed, a: Buffer, label: string) => {
      const err = caught(() => open(key, s, a));
      expect(err, label).to.be.instanceOf(IntegrityError);
      expect((err as Error).message, label).to.match(/^integrity check failed/);
    };

    it('in the nonce (all 96 bits)', () => {
      for (let bit = 0; bit < NONCE_BYTES * 8; bit++) {
        expectIntegrityError({ ...sealed, nonce: flipBit(sealed.nonce, bit) }, aad, `nonce bit ${bit}`);
      }
    });

    it('in the ciphertext (all 256 bits)', () => {
      for (let bit = 0; bit < sealed.ciphertext.length * 8; bit++) {
        expectIntegrityError({ ...sealed, ciphertext: flipBit(sealed.ciphertext, bit) }, aad, `ciphertext bit ${bit}`);
      }
    });

    it('in the tag (all 128 bits)', () => {
      for (let bit = 0; bit < TAG_BYTES * 8; bit++) {
        expectIntegrityError({ ...sealed, tag: flipBit(sealed.tag, bit) }, aad, `tag bit ${bit}`);
      }
    });

    it('in the AAD (every bit)', () => {
      for (let bit = 0; bit < aad.length * 8; bit++) {
        expectIntegrityError(sealed, flipBit(aad, bit), `aad bit ${bit}`);
      }
    });

    it('the unmodified value still opens (the flips above did not mutate it)', () => {
      expect(open(key, sealed, aad).equals(plaintext)).to.equal(true);
    });
  });

  it('a truncated, extended or empty part makes open throw IntegrityError', () => {
    const sealed = seal(key, Buffer.from('some plaintext'), aad);
    const variants: Sealed[] = [
      { ...sealed, ciphertext: sealed.ciphertext.subarray(1) },
      { ...sealed, ciphertext: Buffer.concat([sealed.ciphertext, Buffer.from([0])]) },
      { ...sealed, ciphertext: Buffer.alloc(0) },
      { ...sealed, tag: sealed.tag.subarray(0, 12) }, // a short tag must never be accepted
      { ...sealed, tag: sealed.tag.subarray(0, 4) },
      { ...sealed, tag: Buffer.alloc(0) },
      { ...sealed, nonce: sealed.nonce.subarray(0, 8) },
      { ...sealed, nonce: Buffer.concat([sealed.nonce, Buffer.from([0])]) },
    ];
    for (const v of variants) expect(caught(() => open(key, v, aad))).to.be.instanceOf(IntegrityError);
  });

  it('the AAD is bound: empty or different AAD throws IntegrityError', () => {
    const sealed = seal(key, Buffer.from('x'), aad);
    expect(caught(() => open(key, sealed, Buffer.alloc(0)))).to.be.instanceOf(IntegrityError);
    expect(caught(() => open(key, sealed, Buffer.concat([aad, Buffer.from([0])])))).to.be.instanceOf(IntegrityError);
  });

  it('a wrong key throws IntegrityError (also a key of the wrong size)', () => {
    const sealed = seal(key, Buffer.from('secret'), aad);
    expect(caught(() => open(randomBytes(32), sealed, aad))).to.be.instanceOf(IntegrityError);
    expect(caught(() => open(flipBit(key, 0), sealed, aad))).to.be.instanceOf(IntegrityError);
    expect(caught(() => open(key.subarray(0, 16), sealed, aad))).to.be.instanceOf(IntegrityError);
  });

  it('IntegrityError messages never carry the plaintext', () => {
    const sealed = seal(key, Buffer.from('4111111111111111'), aad);
    const err = caught(() => open(key, { ...sealed, tag: flipBit(sealed.tag, 0) }, aad)) as Error;
    expect(err.message).not.to.include('4111');
    expect(err.name).to.equal('IntegrityError');
  });

  it('golden vector: NIST GCM test case 16 (AES-256, with AAD) opens to its plaintext', () => {
    const plaintext = open(
      hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
      {
        nonce: hex('cafebabefacedbaddecaf888'),
        ciphertext: hex(
          '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
        ),
        tag: hex('76fc6ece0f4e1768cddf8853bb2d551b'),
      },
      hex('feedfacedeadbeeffeedfacedeadbeefabaddad2'),
    );
    expect(plaintext.toString('hex')).to.equal(
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
    );
  });

  describe('golden vectors of the storage format (a change here breaks every stored record)', () => {
    const goldenKey = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const GOLDEN_VALUE_AAD = '000000127069692d7661756c742f76616c75652f76310000000764656661756c740000000370616e00000005746f6b5f780000000131';

    it('valueAad("default","pan","tok_x",1) is exactly the checked-in bytes', () => {
      expect(valueAad('default', 'pan', 'tok_x', 1).toString('hex')).to.equal(GOLDEN_VALUE_AAD);
    });

    it('open() of a checked-in nonce/ciphertext/tag under valueAad returns the plaintext', () => {
      const sealed: Sealed = {
        nonce: hex('cafebabefacedbaddecaf888'),
        ciphertext: hex('be9291179b4b7e2a773a6cec4a2cb80e'),
        tag: hex('63f1319c69e1f1260556fa5f8139c996'),
      };
      const aadNow = valueAad('default', 'pan', 'tok_x', 1);
      expect(open(goldenKey, sealed, aadNow).toString('utf8')).to.equal('4111111111111111');
      // The same record does not open as another row (token, version, type or tenant changed).
      for (const other of [
        valueAad('default', 'pan', 'tok_y', 1),
        valueAad('default', 'pan', 'tok_x', 2),
        valueAad('default', 'ssn', 'tok_x', 1),
        valueAad('other', 'pan', 'tok_x', 1),
      ]) {
        expect(caught(() => open(goldenKey, sealed, other))).to.be.instanceOf(IntegrityError);
      }
    });

    it('a checked-in wrapped data key (local:v1, blob format 1) unwraps under the checked-in master key', async () => {
      const provider = new LocalKeyProvider(MasterKeyring.fromBase64('QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI='));
      const blob = hex(
        '010f0e0d0c0b0a090807060504b4431e2fae5513926e1b2e7b160a607e50a4d1e7382baa9a5eff9a5ef94cb1acd34ad5507dbb6fb1973728b7556e8d0d',
      );
      const dek = await provider.unwrap({ kekId: 'local:v1', blob }, { tenant: 'default', purpose: 'data', version: '1' });
      expect(dek.toString('hex')).to.equal('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf');
    });
  });

  describe('encodeFields', () => {
    it('is unambiguous: ("ab","c") and ("a","bc") encode differently', () => {
      expect(encodeFields('l', ['ab', 'c']).equals(encodeFields('l', ['a', 'bc']))).to.equal(false);
    });

    it('is unambiguous across the label boundary, empty fields and field counts', () => {
      const encodings = [
        encodeFields('ab', []),
        encodeFields('a', ['b']),
        encodeFields('a', ['b', '']),
        encodeFields('a', ['', 'b']),
        encodeFields('a', ['']),
        encodeFields('a', []),
        encodeFields('', ['a']),
        encodeFields('a', ['b\u0000']),
      ].map((b) => b.toString('hex'));
      expect(new Set(encodings).size).to.equal(encodings.length);
    });

    it('is each field as a 4-byte big-endian byte length followed by its UTF-8 bytes', () => {
      expect(encodeFields('L', ['é', 7]).toString('hex')).to.equal('000000014c' + '00000002c3a9' + '0000000137');
    });

    it('is deterministic and encodes a number as its decimal string', () => {
      expect(encodeFields('x', [1, 'a']).equals(encodeFields('x', [1, 'a']))).to.equal(true);
      expect(encodeFields('x', [12]).equals(encodeFields('x', ['12']))).to.equal(true);
    });
  });
});

// ---------------------------------------------------------------- master keyring

describe('crypto / MasterKeyring', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pii-vault-keyring-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  let n = 0;
  const fresh = () => join(dir, `master-${++n}.key`);

  const writeKeyring = (path: string, content: unknown, mode = 0o600) => {
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content), { mode });
    chmodSync(path, mode);
  };
  const b64 = (bytes: number) => randomBytes(bytes).toString('base64');

  const expectLoadError = (path: string, pattern: RegExp) => {
    const err = caught(() => MasterKeyring.load(path));
    expect(err).to.be.instanceOf(KeyUnavailableError);
    expect((err as Error).message).to.match(pattern);
    expect((err as Error).message).to.include(path);
  };

  it('generate() makes version 1 active with a 256-bit random key and no other version', () => {
    const a = MasterKeyring.generate();
    const b = MasterKeyring.generate();
    expect(a.active).to.equal(1);
    expect(a.key(1)!.length).to.equal(32);
    expect(a.key(2)).to.equal(undefined);
    expect(a.key(0)).to.equal(undefined);
    expect(a.key(1)!.equals(b.key(1)!)).to.equal(false);
  });

  it('save then load round-trips the keys and the active version', () => {
    const path = fresh();
    const ring = MasterKeyring.generate();
    ring.save(path, true);
    const loaded = MasterKeyring.load(path);
    expect(loaded.active).to.equal(1);
    expect(loaded.key(1)!.equals(ring.key(1)!)).to.equal(true);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    expect(file.format).to.equal('pii-vault-master-keyring/1');
    expect(file.active).to.equal(1);
    expect(file.keys).to.have.length(1);
    expect(Buffer.from(file.keys[0].key, 'base64').equals(ring.key(1)!)).to.equal(true);
  });

  it('save creates the file with mode 0600', () => {
    const path = fresh();
    MasterKeyring.generate().save(path, true);
    expect(statSync(path).mode & 0o777).to.equal(0o600);
  });

  it('load refuses a file that group or others may read or write, with a message mentioning chmod', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666]) {
      const path = fresh();
      MasterKeyring.generate().save(path, true);
      chmodSync(path, mode);
      const err = caught(() => MasterKeyring.load(path));
      expect(err, mode.toString(8)).to.be.instanceOf(KeyUnavailableError);
      expect((err as Error).message).to.include('chmod 600');
      expect((err as Error).message).to.include(path);
      expect((err as Error).message).to.include(mode.toString(8));
    }
  });

  it('load accepts owner-only modes 0600 and 0400', () => {
    for (const mode of [0o600, 0o400]) {
      const path = fresh();
      MasterKeyring.generate().save(path, true);
      chmodSync(path, mode);
      expect(MasterKeyring.load(path).active).to.equal(1);
    }
  });

  it('load of a missing file fails with KeyUnavailableError naming the file and ENOENT', () => {
    const path = join(dir, 'does-not-exist.key');
    expectLoadError(path, /ENOENT/);
  });

  it('load refuses a file that is not JSON', () => {
    const path = fresh();
    writeKeyring(path, '{ not json');
    expectLoadError(path, /not valid JSON/);
  });

  it('load refuses a file of another format or without a keys array', () => {
    const key = b64(32);
    for (const content of [
      { format: 'pii-vault-master-keyring/2', active: 1, keys: [{ version: 1, key }] },
      { active: 1, keys: [{ version: 1, key }] },
      { format: 'pii-vault-master-keyring/1', active: 1, keys: { version: 1, key } },
      { format: 'pii-vault-master-keyring/1', active: 1 },
    ]) {
      const path = fresh();
      writeKeyring(path, content);
      expectLoadError(path, /is not a pii-vault-master-keyring\/1 keyring/);
    }
  });

  it('load refuses a key of the wrong length or an invalid version', () => {
    for (const entry of [
      { version: 1, key: b64(31) },
      { version: 1, key: b64(33) },
      { version: 1, key: b64(16) },
      { version: 1, key: '' },
      { version: 0, key: b64(32) },
      { version: -1, key: b64(32) },
      { version: 1.5, key: b64(32) },
      { version: '1', key: b64(32) },
    ]) {
      const path = fresh();
      writeKeyring(path, { format: 'pii-vault-master-keyring/1', active: 1, keys: [entry] });
      expectLoadError(path, /invalid key entry/);
    }
  });

  it('load refuses a keyring whose active version is missing', () => {
    for (const active of [2, 0, '1', null]) {
      const path = fresh();
      writeKeyring(path, { format: 'pii-vault-master-keyring/1', active, keys: [{ version: 1, key: b64(32) }] });
      expectLoadError(path, /active version .* is missing/);
    }
    const path = fresh();
    writeKeyring(path, { format: 'pii-vault-master-keyring/1', active: 1, keys: [] });
    expectLoadError(path, /active version 1 is missing/);
  });

  it('load reads every version of a multi-version keyring file and its active version', () => {
    const path = fresh();
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    writeKeyring(path, {
      format: 'pii-vault-master-keyring/1',
      active: 2,
      keys: [
        { version: 1, key: k1.toString('base64'), createdAt: 'x' },
        { version: 2, key: k2.toString('base64'), createdAt: 'y' },
      ],
    });
    const ring = MasterKeyring.load(path);
    expect(ring.active).to.equal(2);
    expect(ring.key(1)!.equals(k1)).to.equal(true);
    expect(ring.key(2)!.equals(k2)).to.equal(true);
    // And it saves both back.
    const copy = fresh();
    ring.save(copy, true);
    const again = MasterKeyring.load(copy);
    expect(again.active).to.equal(2);
    expect(again.key(1)!.equals(k1)).to.equal(true);
    expect(again.key(2)!.equals(k2)).to.equal(true);
  });

  it('fromBase64 accepts exactly 32 bytes (surrounding whitespace trimmed) as version 1', () => {
    const key = randomBytes(32);
    const ring = MasterKeyring.fromBase64(`  ${key.toString('base64')}\n`);
    expect(ring.active).to.equal(1);
    expect(ring.key(1)!.equals(key)).to.equal(true);
  });

  it('fromBase64 rejects a key of the wrong length with KeyUnavailableError', () => {
    for (const encoded of [b64(31), b64(33), b64(16), b64(64), '', '   ']) {
      const err = caught(() => MasterKeyring.fromBase64(encoded));
      expect(err, JSON.stringify(encoded)).to.be.instanceOf(KeyUnavailableError);
      expect((err as Error).message).to.include('32 bytes');
    }
  });

  it('save with exclusive=true refuses to overwrite an existing file and leaves it unchanged', () => {
    const path = fresh();
    const first = MasterKeyring.generate();
    first.save(path, true);
    const before = readFileSync(path, 'utf8');
    const err = caught(() => MasterKeyring.generate().save(path, true));
    expect((err as NodeJS.ErrnoException).code).to.equal('EEXIST');
    expect(readFileSync(path, 'utf8')).to.equal(before);
    expect(MasterKeyring.load(path).key(1)!.equals(first.key(1)!)).to.equal(true);
  });

  it('save with exclusive=false replaces an existing file', () => {
    const path = fresh();
    MasterKeyring.generate().save(path, true);
    const second = MasterKeyring.generate();
    second.save(path, false);
    expect(MasterKeyring.load(path).key(1)!.equals(second.key(1)!)).to.equal(true);
  });

  it('save with exclusive=false leaves the file at mode 0600 even if it existed with 0644', () => {
    const path = fresh();
    writeFileSync(path, 'old', { mode: 0o644 });
    chmodSync(path, 0o644);
    MasterKeyring.generate().save(path, false);
    expect(statSync(path).mode & 0o777).to.equal(0o600);
  });

  it('load refuses JSON null and null entries with KeyUnavailableError', () => {
    const a = fresh();
    writeKeyring(a, 'null');
    expectLoadError(a, /keyring/);
    const b = fresh();
    writeKeyring(b, { format: 'pii-vault-master-keyring/1', active: 1, keys: [null] });
    expectLoadError(b, /invalid key entry/);
  });

  it('no file is left behind by a failed load', () => {
    const path = join(dir, 'never.key');
    caught(() => MasterKeyring.load(path));
    expect(existsSync(path)).to.equal(false);
  });
});

// ---------------------------------------------------------------- local key provider

describe('crypto / LocalKeyProvider', () => {
  const ring = MasterKeyring.generate();
  const provider = new LocalKeyProvider(ring);

  it('wrap then unwrap returns the data key', async () => {
    const dek = randomBytes(32);
    const wrapped = await provider.wrap(dek, CTX);
    expect((await provider.unwrap(wrapped, CTX)).equals(dek)).to.equal(true);
  });

  it('a wrapped key is blob format 1: version byte | 12-byte nonce | 32-byte ciphertext | 16-byte tag, without the plaintext', async () => {
    const dek = randomBytes(32);
    const wrapped = await provider.wrap(dek, CTX);
    expect(wrapped.kekId).to.equal('local:v1');
    expect(wrapped.blob.length).to.equal(1 + 12 + 32 + 16);
    expect(wrapped.blob[0]).to.equal(1);
    expect(wrapped.blob.includes(dek.subarray(0, 8))).to.equal(false);
  });

  it('wrapping the same key twice gives different blobs (fresh nonce)', async () => {
    const dek = randomBytes(32);
    const a = await provider.wrap(dek, CTX);
    const b = await provider.wrap(dek, CTX);
    expect(a.blob.equals(b.blob)).to.equal(false);
  });

  it('Postcondition: generateDataKey returns a fresh 256-bit key and its wrapping, which unwraps to it', async () => {
    const a = await provider.generateDataKey(CTX);
    const b = await provider.generateDataKey(CTX);
    expect(a.plaintext.length).to.equal(32);
    expect(a.plaintext.equals(b.plaintext)).to.equal(false);
    expect(a.wrapped.kekId).to.equal('local:v1');
    expect((await provider.unwrap(a.wrapped, CTX)).equals(a.plaintext)).to.equal(true);
  });

  it('unwrap under a different encryption context (tenant, purpose or version) fails with IntegrityError', async () => {
    const wrapped = await provider.wrap(randomBytes(32), CTX);
    const others: EncryptionContext[] = [
      { ...CTX, tenant: 'other' },
      { ...CTX, tenant: 'defaul' },
      { ...CTX, purpose: 'fingerprint' },
      { ...CTX, purpose: 'audit' },
      { ...CTX, version: '2' },
      { ...CTX, version: '01' },
    ];
    for (const ctx of others) {
      expect(await rejection(provider.unwrap(wrapped, ctx)), JSON.stringify(ctx)).to.be.instanceOf(IntegrityError);
    }
    // Shifting characters between context fields does not collide either.
    const shifted = await provider.wrap(randomBytes(32), { tenant: 'ab', purpose: 'data', version: '1' });
    expect(await rejection(provider.unwrap(shifted, { tenant: 'a', purpose: 'data', version: 'b1' }))).to.be.instanceOf(IntegrityError);
  });

  it('unwrap of a blob with any single bit flipped fails', async () => {
    const wrapped = await provider.wrap(randomBytes(32), CTX);
    for (let bit = 0; bit < wrapped.blob.length * 8; bit++) {
      const err = await rejection(provider.unwrap({ kekId: wrapped.kekId, blob: flipBit(wrapped.blob, bit) }, CTX));
      expect(err, `bit ${bit}`).to.be.instanceOf(IntegrityError);
    }
  });

  it('unwrap of a truncated, extended or empty blob fails with IntegrityError', async () => {
    const { blob, kekId } = await provider.wrap(randomBytes(32), CTX);
    for (const bad of [blob.subarray(0, blob.length - 1), Buffer.concat([blob, Buffer.from([0])]), Buffer.alloc(0)]) {
      expect(await rejection(provider.unwrap({ kekId, blob: bad }, CTX))).to.be.instanceOf(IntegrityError);
    }
  });

  it('unwrap under a different master key fails', async () => {
    const wrapped = await provider.wrap(randomBytes(32), CTX);
    const other = new LocalKeyProvider(MasterKeyring.generate());
    expect(await rejection(other.unwrap(wrapped, CTX))).to.be.instanceOf(IntegrityError);
  });

  it('unwrap of a key wrapped by an unknown KEK or KEK version fails with KeyUnavailableError', async () => {
    const wrapped = await provider.wrap(randomBytes(32), CTX);
    for (const kekId of ['local:v2', 'arn:aws:kms:eu-west-1:111122223333:key/x', 'local:', 'LOCAL:v1', '']) {
      const err = await rejection(provider.unwrap({ kekId, blob: wrapped.blob }, CTX));
      expect(err, kekId).to.be.instanceOf(KeyUnavailableError);
    }
  });

  it('the kekId is authenticated: a relabelled kekId of the same version does not unwrap', async () => {
    const wrapped = await provider.wrap(randomBytes(32), CTX);
    expect(await rejection(provider.unwrap({ kekId: 'local:v01', blob: wrapped.blob }, CTX))).to.be.instanceOf(IntegrityError);
  });

  it('describe() names the local KEK version 1 as local:v1, and the provider is healthy', async () => {
    expect(provider.describe()).to.deep.equal({ kind: 'local', kekId: 'local:v1' });
    expect(await provider.healthy()).to.equal(true);
  });

  it('a keyring loaded with versions 1 and 2 (active 2) wraps under local:v2 and still unwraps what v1 wrapped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pii-vault-kek-'));
    try {
      const k1 = randomBytes(32);
      const k2 = randomBytes(32);
      const v1Only = MasterKeyring.fromBase64(k1.toString('base64'));
      const path = join(dir, 'master.key');
      writeFileSync(
        path,
        JSON.stringify({
          format: 'pii-vault-master-keyring/1',
          active: 2,
          keys: [
            { version: 1, key: k1.toString('base64') },
            { version: 2, key: k2.toString('base64') },
          ],
        }),
        { mode: 0o600 },
      );
      const rotated = new LocalKeyProvider(MasterKeyring.load(path));
      expect(rotated.describe().kekId).to.equal('local:v2');

      const dek = randomBytes(32);
      const oldWrap = await new LocalKeyProvider(v1Only).wrap(dek, CTX);
      expect(oldWrap.kekId).to.equal('local:v1');
      expect((await rotated.unwrap(oldWrap, CTX)).equals(dek)).to.equal(true);

      const newWrap = await rotated.wrap(dek, CTX);
      expect(newWrap.kekId).to.equal('local:v2');
      expect((await rotated.unwrap(newWrap, CTX)).equals(dek)).to.equal(true);
      // The v1-only keyring cannot unwrap what v2 wrapped.
      expect(await rejection(new LocalKeyProvider(v1Only).unwrap(newWrap, CTX))).to.be.instanceOf(KeyUnavailableError);
      // A v2 blob relabelled as v1 does not open under v1.
      expect(await rejection(rotated.unwrap({ kekId: 'local:v1', blob: newWrap.blob }, CTX))).to.be.instanceOf(IntegrityError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Precondition: wrap refuses a key that is not exactly 256 bits (KeyUnavailableError)', async () => {
    for (const size of [0, 16, 31, 33, 64]) {
      expect(await rejection(provider.wrap(randomBytes(size), CTX)), String(size)).to.be.instanceOf(KeyUnavailableError);
    }
  });

  it('Postcondition: an unwrapped data key is exactly 256 bits (a backend returning another size is refused)', async () => {
    const broken = new ShortKeyProvider();
    expect(await rejection(broken.unwrap({ kekId: 'short:v1', blob: Buffer.alloc(1) }, CTX))).to.be.instanceOf(KeyUnavailableError);
  });

  it('Postcondition: a generated data key is exactly 256 bits (a backend returning another size is refused)', async () => {
    const broken = new ShortKeyProvider();
    expect(await rejection(broken.generateDataKey(CTX))).to.be.instanceOf(KeyUnavailableError);
  });
});

// ---------------------------------------------------------------- key manager

describe('crypto / KeyManager (SqliteStore)', () => {
  const stores = withTempStore();

  const setup = async (options?: { ttlMs: number; maxEntries: number }) => {
    const store = await stores.open();
    const ring = MasterKeyring.generate();
    const provider = new CountingProvider(new LocalKeyProvider(ring));
    const keys = new KeyManager(store, provider, options);
    return { store, ring, provider, keys };
  };

  const keyRows = (store: SqliteStore, tenant: string, purpose: string) =>
    store.db.prepare('SELECT * FROM data_keys WHERE tenant = ? AND purpose = ?').all(tenant, purpose) as {
      version: number;
      state: string;
      kek_id: string;
      wrapped: Buffer | null;
    }[];

  it('activeKey creates version 1 once and returns the same 256-bit key afterwards', async () => {
    const { store, keys, provider } = await setup();
    const first = await keys.activeKey('t1', 'data');
    expect(first.version).to.equal(1);
    expect(first.key.length).to.equal(32);
    for (let i = 0; i < 5; i++) {
      const again = await keys.activeKey('t1', 'data');
      expect(again.version).to.equal(1);
      expect(again.key.equals(first.key)).to.equal(true);
    }
    const rows = keyRows(store, 't1', 'data');
    expect(rows).to.have.length(1);
    expect(rows[0].version).to.equal(1);
    expect(rows[0].state).to.equal('active');
    expect(rows[0].kek_id).to.equal('local:v1');
    expect(provider.generates).to.equal(1);
  });

  it('the store holds the data key only wrapped, never in plain', async () => {
    const { store, keys } = await setup();
    const { key } = await keys.activeKey('t1', 'data');
    const [row] = keyRows(store, 't1', 'data');
    expect(row.wrapped).to.be.instanceOf(Buffer);
    expect(row.wrapped!.includes(key)).to.equal(false);
    expect(row.wrapped!.includes(key.subarray(0, 8))).to.equal(false);
  });

  it('the stored wrapping is bound to its tenant, purpose and version', async () => {
    const { store, ring, keys } = await setup();
    const { key } = await keys.activeKey('t1', 'fingerprint');
    const [row] = keyRows(store, 't1', 'fingerprint');
    const local = new LocalKeyProvider(ring);
    const wrapped = { kekId: row.kek_id, blob: row.wrapped! };
    expect((await local.unwrap(wrapped, context('t1', 'fingerprint', 1))).equals(key)).to.equal(true);
    expect(await rejection(local.unwrap(wrapped, context('t2', 'fingerprint', 1)))).to.be.instanceOf(IntegrityError);
    expect(await rejection(local.unwrap(wrapped, context('t1', 'data', 1)))).to.be.instanceOf(IntegrityError);
    expect(await rejection(local.unwrap(wrapped, context('t1', 'fingerprint', 2)))).to.be.instanceOf(IntegrityError);
  });

  it('keys differ per tenant and per purpose', async () => {
    const { keys } = await setup();
    const seen = new Set<string>();
    for (const tenant of ['a', 'b', 'default', '_system']) {
      for (const purpose of ['data', 'fingerprint', 'audit'] as const) {
        seen.add((await keys.activeKey(tenant, purpose)).key.toString('hex'));
      }
    }
    expect(seen.size).to.equal(12);
  });

  it('keyVersion returns the key of an existing version and undefined for an unknown version, tenant or purpose', async () => {
    const { keys } = await setup();
    const { key } = await keys.activeKey('t1', 'data');
    expect((await keys.keyVersion('t1', 'data', 1))!.equals(key)).to.equal(true);
    expect(await keys.keyVersion('t1', 'data', 2)).to.equal(undefined);
    expect(await keys.keyVersion('t1', 'data', 0)).to.equal(undefined);
    expect(await keys.keyVersion('t2', 'data', 1)).to.equal(undefined);
    expect(await keys.keyVersion('t1', 'audit', 1)).to.equal(undefined);
  });

  it('keyVersion does not create a key', async () => {
    const { store, keys } = await setup();
    expect(await keys.keyVersion('t9', 'data', 1)).to.equal(undefined);
    expect(keyRows(store, 't9', 'data')).to.have.length(0);
  });

  it('concurrent activeKey calls for a new tenant (20 at once) all get the same key, and one key row exists', async () => {
    const { store, ring, keys } = await setup();
    const results = await Promise.all(Array.from({ length: 20 }, () => keys.activeKey('fresh', 'data')));
    for (const r of results) {
      expect(r.version).to.equal(1);
      expect(r.key.equals(results[0].key)).to.equal(true);
    }
    expect(keyRows(store, 'fresh', 'data')).to.have.length(1);
    // And what was stored is what they got.
    const cold = new KeyManager(store, new LocalKeyProvider(ring));
    expect((await cold.activeKey('fresh', 'data')).key.equals(results[0].key)).to.equal(true);
  });

  it('concurrent activeKey calls from two managers on one store (two processes) converge on one key', async () => {
    const { store, ring, keys } = await setup();
    const other = new KeyManager(store, new LocalKeyProvider(ring));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? keys : other).activeKey('shared', 'fingerprint')),
    );
    for (const r of results) expect(r.key.equals(results[0].key)).to.equal(true);
    expect(keyRows(store, 'shared', 'fingerprint')).to.have.length(1);
  });

  it('a second KeyManager on the same store (cold cache) unwraps the same key', async () => {
    const { store, ring, keys } = await setup();
    const original = await keys.activeKey('t1', 'data');
    const provider2 = new CountingProvider(new LocalKeyProvider(ring));
    const second = new KeyManager(store, provider2);
    const again = await second.activeKey('t1', 'data');
    expect(again.version).to.equal(1);
    expect(again.key.equals(original.key)).to.equal(true);
    expect((await second.keyVersion('t1', 'data', 1))!.equals(original.key)).to.equal(true);
    expect(provider2.unwraps).to.equal(1);
    expect(provider2.generates).to.equal(0);
  });

  it('a KeyManager with the wrong master key fails with an IntegrityError and does not replace the key', async () => {
    const { store, keys } = await setup();
    const original = await keys.activeKey('t1', 'data');
    const wrong = new KeyManager(store, new LocalKeyProvider(MasterKeyring.generate()));
    const err = await rejection(wrong.activeKey('t1', 'data'));
    expect(err).to.be.instanceOf(IntegrityError);
    expect((err as Error).message).to.match(/wrong master key or tampered/);
    expect((err as Error).message).not.to.include(original.key.toString('hex'));
    expect(await rejection(wrong.keyVersion('t1', 'data', 1))).to.be.instanceOf(IntegrityError);
    expect(keyRows(store, 't1', 'data')).to.have.length(1);
  });

  it('a tampered wrapped key in the store fails with an IntegrityError', async () => {
    const { store, ring, keys } = await setup();
    await keys.activeKey('t1', 'data');
    const [row] = keyRows(store, 't1', 'data');
    store.db.prepare("UPDATE data_keys SET wrapped = ? WHERE tenant = 't1' AND purpose = 'data'").run(flipBit(row.wrapped!, 100));
    const cold = new KeyManager(store, new LocalKeyProvider(ring));
    expect(await rejection(cold.activeKey('t1', 'data'))).to.be.instanceOf(IntegrityError);
  });

  it('a destroyed key version (wrapped = NULL) is reported as undefined by keyVersion', async () => {
    const { store, ring, keys } = await setup();
    await keys.activeKey('t1', 'data');
    store.db.prepare("UPDATE data_keys SET wrapped = NULL, state = 'destroyed' WHERE tenant = 't1'").run();
    const cold = new KeyManager(store, new LocalKeyProvider(ring));
    expect(await cold.keyVersion('t1', 'data', 1)).to.equal(undefined);
  });

  it('the provider is asked to unwrap once per key thanks to the cache', async () => {
    const { store, ring, keys } = await setup();
    await keys.activeKey('t1', 'data');
    await keys.activeKey('t1', 'fingerprint');
    const provider = new CountingProvider(new LocalKeyProvider(ring));
    const cold = new KeyManager(store, provider);
    for (let i = 0; i < 10; i++) {
      await cold.activeKey('t1', 'data');
      await cold.keyVersion('t1', 'data', 1);
      await cold.activeKey('t1', 'fingerprint');
    }
    expect(provider.unwraps).to.equal(2);
  });

  it('concurrent cache misses for one key share a single unwrap call', async () => {
    const { store, ring, keys } = await setup();
    const { key } = await keys.activeKey('t1', 'data');
    const provider = new CountingProvider(new LocalKeyProvider(ring));
    const cold = new KeyManager(store, provider);
    const results = await Promise.all(Array.from({ length: 20 }, () => cold.activeKey('t1', 'data')));
    for (const r of results) expect(r.key.equals(key)).to.equal(true);
    expect(provider.unwraps).to.equal(1);
  });

  it('the creator of a key caches it: creating a key costs no unwrap', async () => {
    const { keys, provider } = await setup();
    await keys.activeKey('t1', 'data');
    await keys.activeKey('t1', 'data');
    await keys.keyVersion('t1', 'data', 1);
    expect(provider.unwraps).to.equal(0);
  });

  it('an expired cache entry (ttlMs: 1) causes a new unwrap', async () => {
    const { keys, provider } = await setup({ ttlMs: 1, maxEntries: 100 });
    const { key } = await keys.activeKey('t1', 'data');
    await sleep(5);
    const again = await keys.activeKey('t1', 'data');
    expect(again.key.equals(key)).to.equal(true);
    expect(provider.unwraps).to.equal(1);
    await sleep(5);
    expect((await keys.keyVersion('t1', 'data', 1))!.equals(key)).to.equal(true);
    expect(provider.unwraps).to.equal(2);
  });

  it('the cache holds at most maxEntries keys: the oldest is evicted and unwrapped again on next use', async () => {
    const { keys, provider } = await setup({ ttlMs: 60_000, maxEntries: 2 });
    await keys.activeKey('a', 'data');
    await keys.activeKey('b', 'data');
    expect(provider.unwraps).to.equal(0);
    await keys.activeKey('c', 'data'); // evicts a
    await keys.activeKey('b', 'data');
    await keys.activeKey('c', 'data');
    expect(provider.unwraps).to.equal(0);
    await keys.activeKey('a', 'data');
    expect(provider.unwraps).to.equal(1);
  });

  it('clear() drops every cached key, so the next use unwraps again', async () => {
    const { keys, provider } = await setup();
    const { key } = await keys.activeKey('t1', 'data');
    const copy = Buffer.from(key);
    keys.clear();
    const again = await keys.activeKey('t1', 'data');
    expect(provider.unwraps).to.equal(1);
    expect(again.key.equals(copy)).to.equal(true);
  });
});
