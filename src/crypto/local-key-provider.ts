import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../atomic-write';
import { IntegrityError, KEY_BYTES, encodeFields, open, seal } from './aead';
import { EncryptionContext, KeyProvider, KeyUnavailableError, ProviderDescription, WrappedKey } from './key-provider';

const KEYRING_FORMAT = 'pii-vault-master-keyring/1';
const BLOB_VERSION = 1;

interface KeyringFile {
  format: typeof KEYRING_FORMAT;
  active: number;
  keys: { version: number; key: string; createdAt: string }[];
}

/** A versioned set of 256-bit master keys; the active version wraps, every version unwraps. */
export class MasterKeyring {
  private constructor(
    readonly active: number,
    private readonly keys: ReadonlyMap<number, Buffer>,
  ) {}

  static generate(): MasterKeyring {
    return new MasterKeyring(1, new Map([[1, randomBytes(KEY_BYTES)]]));
  }

  /** A single key given as base64 (e.g. from an environment variable); it is version 1. */
  static fromBase64(encoded: string): MasterKeyring {
    const key = Buffer.from(encoded.trim(), 'base64');
    if (key.length !== KEY_BYTES) throw new KeyUnavailableError(`master key must be ${KEY_BYTES} bytes of base64`);
    return new MasterKeyring(1, new Map([[1, key]]));
  }

  /** Reads a keyring file, refusing one that other users can read or write. */
  static load(path: string): MasterKeyring {
    let text: string;
    try {
      const mode = statSync(path).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        throw new KeyUnavailableError(`master key file ${path} has mode ${mode.toString(8)}; it must be 600 (chmod 600 ${path})`);
      }
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (err instanceof KeyUnavailableError) throw err;
      throw new KeyUnavailableError(`cannot read master key file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    let parsed: KeyringFile;
    try {
      parsed = JSON.parse(text) as KeyringFile;
    } catch {
      throw new KeyUnavailableError(`master key file ${path} is not valid JSON`);
    }
    if (typeof parsed !== 'object' || parsed === null || parsed.format !== KEYRING_FORMAT || !Array.isArray(parsed.keys)) {
      throw new KeyUnavailableError(`master key file ${path} is not a ${KEYRING_FORMAT} keyring`);
    }
    const keys = new Map<number, Buffer>();
    for (const entry of parsed.keys) {
      if (typeof entry !== 'object' || entry === null) throw new KeyUnavailableError(`master key file ${path} has an invalid key entry`);
      const key = Buffer.from(String(entry.key), 'base64');
      if (!Number.isInteger(entry.version) || entry.version < 1 || key.length !== KEY_BYTES) {
        throw new KeyUnavailableError(`master key file ${path} has an invalid key entry`);
      }
      keys.set(entry.version, key);
    }
    if (!keys.has(parsed.active)) throw new KeyUnavailableError(`master key file ${path}: active version ${parsed.active} is missing`);
    return new MasterKeyring(parsed.active, keys);
  }

  /** Writes the keyring with mode 0600; `exclusive` refuses to replace an existing file. */
  save(path: string, exclusive: boolean): void {
    const file: KeyringFile = {
      format: KEYRING_FORMAT,
      active: this.active,
      keys: [...this.keys].map(([version, key]) => ({ version, key: key.toString('base64'), createdAt: new Date().toISOString() })),
    };
    // Durably and atomically, through a fresh 0600 file: the key is never briefly readable, half-written or lost.
    writeFileAtomic(path, JSON.stringify(file, null, 2) + '\n', { mode: 0o600, exclusive });
  }

  /** A copy of this keyring with one more version, which becomes active. */
  withNewVersion(): MasterKeyring {
    const version = Math.max(...this.keys.keys()) + 1;
    return new MasterKeyring(version, new Map([...this.keys, [version, randomBytes(KEY_BYTES)]]));
  }

  key(version: number): Buffer | undefined {
    return this.keys.get(version);
  }
}

/** The embedded default KEK: wraps data keys with AES-256-GCM under a local master key. */
export class LocalKeyProvider extends KeyProvider {
  constructor(private keyring: MasterKeyring) {
    super();
  }

  describe(): ProviderDescription {
    return { kind: 'local', kekId: kekId(this.keyring.active) };
  }

  async healthy(): Promise<boolean> {
    return this.keyring.key(this.keyring.active) !== undefined;
  }

  owns(kekId: string): boolean {
    return kekId.startsWith('local:');
  }

  /** Swaps in a re-read keyring (after a new master-key version was added). */
  replaceKeyring(keyring: MasterKeyring): void {
    this.keyring = keyring;
  }

  protected async _generateDataKey(context: EncryptionContext) {
    const plaintext = randomBytes(KEY_BYTES);
    return { plaintext, wrapped: await this._wrap(plaintext, context) };
  }

  protected async _wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    const version = this.keyring.active;
    const id = kekId(version);
    const sealed = seal(this.masterKey(version), plaintext, wrapAad(id, context));
    return { kekId: id, blob: Buffer.concat([Buffer.from([BLOB_VERSION]), sealed.nonce, sealed.ciphertext, sealed.tag]) };
  }

  protected async _unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const version = parseKekId(wrapped.kekId);
    const blob = wrapped.blob;
    if (blob.length !== 1 + 12 + KEY_BYTES + 16 || blob[0] !== BLOB_VERSION) throw new IntegrityError('malformed wrapped key');
    return open(
      this.masterKey(version),
      { nonce: blob.subarray(1, 13), ciphertext: blob.subarray(13, 13 + KEY_BYTES), tag: blob.subarray(13 + KEY_BYTES) },
      wrapAad(wrapped.kekId, context),
    );
  }

  private masterKey(version: number): Buffer {
    const key = this.keyring.key(version);
    if (!key) throw new KeyUnavailableError(`master key version ${version} is not in the keyring`);
    return key;
  }
}

function kekId(version: number): string {
  return `local:v${version}`;
}

function parseKekId(id: string): number {
  const match = /^local:v(\d+)$/.exec(id);
  if (!match) throw new KeyUnavailableError(`data key was wrapped by ${id}, not by the local master key`);
  return Number(match[1]);
}

function wrapAad(id: string, context: EncryptionContext): Buffer {
  return encodeFields('pii-vault/wrap/v1', [id, context.tenant, context.purpose, context.version]);
}
