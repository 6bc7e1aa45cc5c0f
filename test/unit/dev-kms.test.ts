import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyRotationStatusCommand,
  KMSClient,
  type KMSClientConfig,
  ListAliasesCommand,
  ListKeysCommand,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { expect } from 'chai';
import { DEV_KMS_CREDENTIALS, type DevKms, startDevKms } from '../../src/dev-kms/server';

// ---------------------------------------------------------------- helpers

async function rejection(promise: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number } }> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function clientFor(kms: DevKms, extra: Partial<KMSClientConfig> = {}): KMSClient {
  return new KMSClient({ region: kms.region, endpoint: kms.url, credentials: DEV_KMS_CREDENTIALS, maxAttempts: 1, ...extra });
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('utf8');

/** Material version field of the dev KMS blob: 'PVK1' | 36-byte key id | uint32 BE version | … */
const blobVersion = (blob: Uint8Array | undefined): number => Buffer.from(blob ?? []).readUInt32BE(40);

type RawRequest = { body: unknown; headers: Record<string, string> };

/** Lets a test change the request the real SDK sends: `beforeSigning` is covered by the signature, `afterSigning` is not. */
function withMiddleware(
  kmsClient: KMSClient,
  beforeSigning: (request: RawRequest) => void,
  afterSigning?: (request: RawRequest) => void,
): KMSClient {
  type Middleware = Parameters<typeof kmsClient.middlewareStack.addRelativeTo>[0];
  const step =
    (change: (request: RawRequest) => void) =>
    (next: (args: { request: RawRequest }) => Promise<unknown>) =>
    async (args: { request: RawRequest }) => {
      change(args.request);
      args.request.headers['content-length'] = String(Buffer.byteLength(String(args.request.body)));
      return next(args);
    };
  kmsClient.middlewareStack.addRelativeTo(step(beforeSigning) as unknown as Middleware, {
    relation: 'before',
    toMiddleware: 'httpSigningMiddleware',
    name: 'beforeSigning',
  });
  if (afterSigning) {
    kmsClient.middlewareStack.addRelativeTo(step(afterSigning) as unknown as Middleware, {
      relation: 'after',
      toMiddleware: 'httpSigningMiddleware',
      name: 'afterSigning',
    });
  }
  return kmsClient;
}

describe('dev KMS (real @aws-sdk/client-kms over HTTP)', function () {
  this.timeout(10_000);

  let kms: DevKms;
  let client: KMSClient;

  before(async () => {
    kms = await startDevKms();
    client = clientFor(kms);
  });

  after(async () => {
    client.destroy();
    await kms.close();
  });

  afterEach(() => kms.clearFaults());

  async function newKey(description = 'test key'): Promise<{ keyId: string; arn: string }> {
    const out = await client.send(new CreateKeyCommand({ Description: description }));
    return { keyId: out.KeyMetadata!.KeyId!, arn: out.KeyMetadata!.Arn! };
  }

  describe('keys and aliases', () => {
    it('creates and describes a symmetric key', async () => {
      const before = Date.now();
      const created = await client.send(
        new CreateKeyCommand({ Description: 'tenant KEK', KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT' }),
      );
      const meta = created.KeyMetadata!;
      expect(meta.KeyId).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(meta.Arn).to.equal(`arn:aws:kms:us-east-1:111122223333:key/${meta.KeyId}`);

      const { KeyMetadata: d } = await client.send(new DescribeKeyCommand({ KeyId: meta.KeyId }));
      const after = Date.now();
      expect(d).to.include({
        AWSAccountId: '111122223333',
        KeyId: meta.KeyId,
        Arn: meta.Arn,
        Enabled: true,
        Description: 'tenant KEK',
        KeyUsage: 'ENCRYPT_DECRYPT',
        KeyState: 'Enabled',
        Origin: 'AWS_KMS',
        KeyManager: 'CUSTOMER',
        KeySpec: 'SYMMETRIC_DEFAULT',
        CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
        MultiRegion: false,
      });
      expect(d!.EncryptionAlgorithms).to.deep.equal(['SYMMETRIC_DEFAULT']);
      expect(d!.CreationDate).to.be.instanceOf(Date);
      // Created between the two calls (KMS dates have whole-second precision at worst).
      expect(d!.CreationDate!.getTime()).to.be.within(before - 1000, after + 1000);
    });

    it('resolves a key by id, ARN, alias and alias ARN', async () => {
      const { keyId, arn } = await newKey();
      await client.send(new CreateAliasCommand({ AliasName: 'alias/lookup-test', TargetKeyId: keyId }));
      for (const ref of [keyId, arn, 'alias/lookup-test', 'arn:aws:kms:us-east-1:111122223333:alias/lookup-test']) {
        const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: ref }));
        expect(KeyMetadata!.KeyId, ref).to.equal(keyId);
      }
      const { Aliases } = await client.send(new ListAliasesCommand({}));
      expect(Aliases).to.deep.include.members([
        {
          AliasName: 'alias/lookup-test',
          AliasArn: 'arn:aws:kms:us-east-1:111122223333:alias/lookup-test',
          TargetKeyId: keyId,
          CreationDate: Aliases!.find((a) => a.AliasName === 'alias/lookup-test')!.CreationDate,
        },
      ]);
      const { Keys, Truncated } = await client.send(new ListKeysCommand({}));
      expect(Keys).to.deep.include({ KeyId: keyId, KeyArn: arn });
      expect(Truncated).to.equal(false);
    });

    it('rejects duplicate and reserved aliases', async () => {
      const { keyId } = await newKey();
      await client.send(new CreateAliasCommand({ AliasName: 'alias/dup', TargetKeyId: keyId }));
      expect((await rejection(client.send(new CreateAliasCommand({ AliasName: 'alias/dup', TargetKeyId: keyId })))).name).to.equal(
        'AlreadyExistsException',
      );
      expect((await rejection(client.send(new CreateAliasCommand({ AliasName: 'alias/aws/mine', TargetKeyId: keyId })))).name).to.equal(
        'ValidationException',
      );
      expect((await rejection(client.send(new CreateAliasCommand({ AliasName: 'no-prefix', TargetKeyId: keyId })))).name).to.equal(
        'ValidationException',
      );
    });

    it('answers NotFoundException for unknown keys and aliases', async () => {
      for (const ref of [
        '00000000-0000-4000-8000-000000000000',
        'alias/nope',
        'arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000',
      ]) {
        const err = await rejection(client.send(new DescribeKeyCommand({ KeyId: ref })));
        expect(err.name, ref).to.equal('NotFoundException');
        expect(err.$metadata?.httpStatusCode).to.equal(400);
      }
    });

    it('answers UnsupportedOperationException for operations it does not implement', async () => {
      const { keyId } = await newKey();
      const err = await rejection(client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId })));
      expect(err.name).to.equal('UnsupportedOperationException');
    });

    it('exposes createKey/createAlias on the handle', async () => {
      const { keyId, arn } = await kms.createKey('via handle');
      kms.createAlias('alias/handle', arn);
      const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: 'alias/handle' }));
      expect(KeyMetadata).to.include({ KeyId: keyId, Description: 'via handle' });
    });
  });

  describe('cryptography', () => {
    it('round-trips Encrypt/Decrypt with an encryption context', async () => {
      const { keyId, arn } = await newKey();
      const ctx = { tenant: 'acme', purpose: 'dek' };
      const enc = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('hello kms'), EncryptionContext: ctx }));
      expect(enc.KeyId).to.equal(arn);
      expect(enc.EncryptionAlgorithm).to.equal('SYMMETRIC_DEFAULT');
      // the context's key order does not matter
      const dec = await client.send(
        new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { purpose: 'dek', tenant: 'acme' } }),
      );
      expect(text(dec.Plaintext)).to.equal('hello kms');
      expect(dec.KeyId).to.equal(arn);
      expect(dec.EncryptionAlgorithm).to.equal('SYMMETRIC_DEFAULT');
    });

    it('GenerateDataKey returns 32 bytes whose blob decrypts to the same bytes', async () => {
      const { keyId, arn } = await newKey();
      const ctx = { tenant: 't1' };
      const dk = await client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: ctx }));
      expect(dk.Plaintext).to.have.length(32);
      expect(dk.KeyId).to.equal(arn);
      const dec = await client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ctx }));
      expect(Buffer.from(dec.Plaintext!).equals(Buffer.from(dk.Plaintext!))).to.equal(true);

      const small = await client.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 7 }));
      expect(small.Plaintext).to.have.length(7);
    });

    it('rejects a wrong encryption context or a tampered blob with InvalidCiphertextException', async () => {
      const { keyId } = await newKey();
      const { CiphertextBlob } = await client.send(
        new EncryptCommand({ KeyId: keyId, Plaintext: utf8('secret'), EncryptionContext: { a: '1' } }),
      );
      for (const ctx of [{ a: '2' }, {}, { a: '1', b: '1' }] as Record<string, string>[]) {
        expect(
          (await rejection(client.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: ctx })))).name,
          JSON.stringify(ctx),
        ).to.equal('InvalidCiphertextException');
      }
      const tampered = Buffer.from(CiphertextBlob!);
      tampered[tampered.length - 1]! ^= 0x01;
      const err = await rejection(client.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: { a: '1' } })));
      expect(err.name).to.equal('InvalidCiphertextException');
      const garbage = await rejection(client.send(new DecryptCommand({ CiphertextBlob: utf8('not a blob at all') })));
      expect(garbage.name).to.equal('InvalidCiphertextException');
    });

    it('binds every encryption-context key, __proto__, constructor and prototype included (round-trips exactly)', async () => {
      const { keyId } = await newKey();
      for (const special of ['__proto__', 'constructor', 'prototype']) {
        // The SDK itself drops a __proto__ map key, so the context is written into the JSON before signing.
        const withContextKey = (value: string) =>
          withMiddleware(clientFor(kms), (request) => {
            request.body = String(request.body).replace(
              '"EncryptionContext":{',
              `"EncryptionContext":{${JSON.stringify(special)}:"${value}",`,
            );
          });
        const writer = withContextKey('bound');
        const sameReader = withContextKey('bound');
        const otherReader = withContextKey('other');
        try {
          const { CiphertextBlob } = await writer.send(
            new EncryptCommand({ KeyId: keyId, Plaintext: utf8('context-bound'), EncryptionContext: { tenant: 't' } }),
          );
          const dec = await sameReader.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: 't' } }));
          expect(text(dec.Plaintext), special).to.equal('context-bound');
          const without = await rejection(client.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: 't' } })));
          expect(without.name, `${special} left out`).to.equal('InvalidCiphertextException');
          const other = await rejection(otherReader.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: 't' } })));
          expect(other.name, `${special} with another value`).to.equal('InvalidCiphertextException');
        } finally {
          writer.destroy();
          sameReader.destroy();
          otherReader.destroy();
        }
      }
    });

    it('rejects Decrypt naming another key with IncorrectKeyException', async () => {
      const a = await newKey();
      const b = await newKey();
      const { CiphertextBlob } = await client.send(new EncryptCommand({ KeyId: a.keyId, Plaintext: utf8('x') }));
      expect((await rejection(client.send(new DecryptCommand({ CiphertextBlob, KeyId: b.arn })))).name).to.equal('IncorrectKeyException');
      const ok = await client.send(new DecryptCommand({ CiphertextBlob, KeyId: a.arn }));
      expect(text(ok.Plaintext)).to.equal('x');
    });

    it('ReEncrypts to another key and context', async () => {
      const src = await newKey();
      const dst = await newKey();
      const enc = await client.send(new EncryptCommand({ KeyId: src.keyId, Plaintext: utf8('moving'), EncryptionContext: { v: 'old' } }));
      const re = await client.send(
        new ReEncryptCommand({
          CiphertextBlob: enc.CiphertextBlob,
          SourceEncryptionContext: { v: 'old' },
          SourceKeyId: src.keyId,
          DestinationKeyId: dst.keyId,
          DestinationEncryptionContext: { v: 'new' },
        }),
      );
      expect(re).to.include({
        SourceKeyId: src.arn,
        KeyId: dst.arn,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      });
      const dec = await client.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, EncryptionContext: { v: 'new' } }));
      expect(text(dec.Plaintext)).to.equal('moving');
      expect(dec.KeyId).to.equal(dst.arn);
      expect(
        (await rejection(client.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, EncryptionContext: { v: 'old' } })))).name,
      ).to.equal('InvalidCiphertextException');
      const wrongSource = rejection(
        client.send(
          new ReEncryptCommand({
            CiphertextBlob: enc.CiphertextBlob,
            SourceEncryptionContext: { v: 'old' },
            SourceKeyId: dst.keyId,
            DestinationKeyId: dst.keyId,
          }),
        ),
      );
      expect((await wrongSource).name).to.equal('IncorrectKeyException');
    });

    it('RotateKeyOnDemand keeps old ciphertexts decryptable and encrypts under the new version', async () => {
      const { keyId } = await newKey();
      const before = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('v0') }));
      expect(blobVersion(before.CiphertextBlob)).to.equal(0);

      const rotated = await client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
      expect(rotated.KeyId).to.equal(keyId);

      const after = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('v1') }));
      expect(blobVersion(after.CiphertextBlob)).to.equal(1);
      expect(text((await client.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }))).Plaintext)).to.equal('v0');
      expect(text((await client.send(new DecryptCommand({ CiphertextBlob: after.CiphertextBlob }))).Plaintext)).to.equal('v1');
    });

    it('tracks the rotation flag', async () => {
      const { keyId } = await newKey();
      expect((await client.send(new GetKeyRotationStatusCommand({ KeyId: keyId }))).KeyRotationEnabled).to.equal(false);
      await client.send(new EnableKeyRotationCommand({ KeyId: keyId }));
      expect((await client.send(new GetKeyRotationStatusCommand({ KeyId: keyId }))).KeyRotationEnabled).to.equal(true);
      await client.send(new DisableKeyRotationCommand({ KeyId: keyId }));
      expect((await client.send(new GetKeyRotationStatusCommand({ KeyId: keyId }))).KeyRotationEnabled).to.equal(false);
    });

    it('DisableKey makes the key unusable until EnableKey', async () => {
      const { keyId } = await newKey();
      const { CiphertextBlob } = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('locked') }));
      await client.send(new DisableKeyCommand({ KeyId: keyId }));
      const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: keyId }));
      expect(KeyMetadata).to.include({ Enabled: false, KeyState: 'Disabled' });
      for (const op of [
        client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('x') })),
        client.send(new DecryptCommand({ CiphertextBlob })),
        client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' })),
        client.send(new ReEncryptCommand({ CiphertextBlob, DestinationKeyId: keyId })),
      ]) {
        expect((await rejection(op)).name).to.equal('DisabledException');
      }
      await client.send(new EnableKeyCommand({ KeyId: keyId }));
      expect(text((await client.send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).to.equal('locked');
    });

    it('validates input with ValidationException', async () => {
      const { keyId } = await newKey();
      const cases = [
        client.send(new EncryptCommand({ KeyId: keyId, Plaintext: new Uint8Array(4097) })),
        client.send(new EncryptCommand({ KeyId: undefined, Plaintext: utf8('x') })),
        client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_512' as 'AES_256' })),
        client.send(new GenerateDataKeyCommand({ KeyId: keyId })),
        client.send(new CreateKeyCommand({ KeySpec: 'RSA_2048' })),
      ];
      for (const [i, op] of cases.entries()) {
        expect((await rejection(op)).name, `case ${i}`).to.equal('ValidationException');
      }
    });
  });

  describe('authentication', () => {
    it('rejects an unsigned request with MissingAuthenticationTokenException', async () => {
      const res = await fetch(kms.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'TrentService.ListKeys' },
        body: '{}',
      });
      expect(res.status).to.equal(400);
      expect(res.headers.get('x-amzn-errortype')).to.equal('MissingAuthenticationTokenException');
      expect(await res.json()).to.have.property('__type', 'MissingAuthenticationTokenException');
    });

    it('rejects a malformed signature with InvalidSignatureException', async () => {
      const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
      const res = await fetch(kms.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/x-amz-json-1.1',
          'X-Amz-Target': 'TrentService.ListKeys',
          'X-Amz-Date': now,
          Authorization: `AWS4-HMAC-SHA256 Credential=${DEV_KMS_CREDENTIALS.accessKeyId}/${now.slice(0, 8)}/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
        },
        body: '{}',
      });
      expect(res.status).to.equal(400);
      expect(res.headers.get('x-amzn-errortype')).to.equal('InvalidSignatureException');
    });

    it('rejects a wrong secret with InvalidSignatureException', async () => {
      const bad = clientFor(kms, { credentials: { accessKeyId: DEV_KMS_CREDENTIALS.accessKeyId, secretAccessKey: 'not-the-secret' } });
      try {
        expect((await rejection(bad.send(new ListKeysCommand({})))).name).to.equal('InvalidSignatureException');
      } finally {
        bad.destroy();
      }
    });

    it('rejects an unknown access key with UnrecognizedClientException', async () => {
      const bad = clientFor(kms, {
        credentials: { accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: DEV_KMS_CREDENTIALS.secretAccessKey },
      });
      try {
        expect((await rejection(bad.send(new ListKeysCommand({})))).name).to.equal('UnrecognizedClientException');
      } finally {
        bad.destroy();
      }
    });

    it('rejects a request altered after signing with InvalidSignatureException', async () => {
      type Request = { body: string | Uint8Array; headers: Record<string, string> };
      const alterations: Record<string, (request: Request) => void> = {
        body: (r) => {
          r.body = '{"Limit":5}'; // was {}
        },
        'signed header': (r) => {
          r.headers['x-amz-target'] = 'TrentService.ListAliases';
        },
      };
      for (const [what, alter] of Object.entries(alterations)) {
        const tampering = clientFor(kms);
        type Middleware = Parameters<typeof tampering.middlewareStack.addRelativeTo>[0];
        const tamper = (next: (args: { request: Request }) => Promise<unknown>) => async (args: { request: Request }) => {
          alter(args.request);
          args.request.headers['content-length'] = String(Buffer.byteLength(args.request.body));
          return next(args);
        };
        tampering.middlewareStack.addRelativeTo(tamper as unknown as Middleware, {
          relation: 'after',
          toMiddleware: 'httpSigningMiddleware',
          name: 'tamper',
        });
        try {
          expect((await rejection(tampering.send(new ListKeysCommand({})))).name, what).to.equal('InvalidSignatureException');
        } finally {
          tampering.destroy();
        }
      }
    });

    it('refuses a request whose X-Amz-Target is not signed (a signed Encrypt replayed as Decrypt)', async () => {
      const { keyId } = await newKey();
      const victim = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('the victim value') }));
      for (const sentAs of ['TrentService.Encrypt', 'TrentService.Decrypt']) {
        // Signs without X-Amz-Target, then sends it with the target set: the signature covers host, date and body only.
        const unsignedTarget = withMiddleware(
          clientFor(kms),
          (request) => {
            for (const name of Object.keys(request.headers)) if (name.toLowerCase() === 'x-amz-target') delete request.headers[name];
          },
          (request) => {
            request.headers['x-amz-target'] = sentAs;
          },
        );
        try {
          // An Encrypt body that also carries someone else's blob: as Decrypt it would reveal that blob's plaintext.
          const body = { KeyId: keyId, Plaintext: utf8('mine'), CiphertextBlob: victim.CiphertextBlob } as ConstructorParameters<
            typeof EncryptCommand
          >[0];
          const err = await rejection(unsignedTarget.send(new EncryptCommand(body)));
          expect(err.name, sentAs).to.equal('InvalidSignatureException');
          expect(err.message).to.match(/x-amz-target/i);
        } finally {
          unsignedTarget.destroy();
        }
      }
    });

    it('rejects a signature dated more than 15 minutes away', async () => {
      const skewed = clientFor(kms, { systemClockOffset: -20 * 60 * 1000 });
      try {
        expect((await rejection(skewed.send(new ListKeysCommand({})))).name).to.equal('InvalidSignatureException');
      } finally {
        skewed.destroy();
      }
    });

    it('rejects a signature scoped to another region', async () => {
      const other = clientFor(kms, { region: 'eu-west-1' });
      try {
        expect((await rejection(other.send(new ListKeysCommand({})))).name).to.equal('InvalidSignatureException');
      } finally {
        other.destroy();
      }
    });
  });

  describe('persistence', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'dev-kms-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('restores keys and aliases from the data file after a restart', async () => {
      const dataFile = join(dir, 'kms.json');
      const first = await startDevKms({ dataFile });
      const c1 = clientFor(first);
      let keyId: string;
      let blob: Uint8Array | undefined;
      try {
        keyId = (await c1.send(new CreateKeyCommand({ Description: 'durable' }))).KeyMetadata!.KeyId!;
        await c1.send(new CreateAliasCommand({ AliasName: 'alias/durable', TargetKeyId: keyId }));
        blob = (await c1.send(new EncryptCommand({ KeyId: 'alias/durable', Plaintext: utf8('persisted'), EncryptionContext: { k: 'v' } })))
          .CiphertextBlob;
        await c1.send(new EnableKeyRotationCommand({ KeyId: keyId }));
        await c1.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
      } finally {
        c1.destroy();
        await first.close();
      }
      expect(statSync(dataFile).mode & 0o777).to.equal(0o600);
      expect(readdirSync(dir)).to.deep.equal(['kms.json']); // no temp files left behind

      const second = await startDevKms({ dataFile });
      const c2 = clientFor(second);
      try {
        const { KeyMetadata } = await c2.send(new DescribeKeyCommand({ KeyId: 'alias/durable' }));
        expect(KeyMetadata).to.include({ KeyId: keyId, Description: 'durable' });
        const dec = await c2.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { k: 'v' } }));
        expect(text(dec.Plaintext)).to.equal('persisted');
        expect((await c2.send(new GetKeyRotationStatusCommand({ KeyId: keyId }))).KeyRotationEnabled).to.equal(true);
        const fresh = await c2.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('after restart') }));
        expect(blobVersion(fresh.CiphertextBlob)).to.equal(1);
      } finally {
        c2.destroy();
        await second.close();
      }
    });
  });

  describe('fault injection', () => {
    it('throttle N: an SDK client with retries gets through and stats count every attempt', async () => {
      const { keyId } = await newKey();
      const retrying = clientFor(kms, { maxAttempts: 3 });
      try {
        kms.resetStats();
        kms.setFaults({ throttle: 2 });
        const out = await retrying.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8('eventually') }));
        expect(out.CiphertextBlob).to.have.length.above(0);
        expect(kms.stats()).to.deep.equal({ total: 3, byOperation: { Encrypt: 3 } });
      } finally {
        retrying.destroy();
      }
    });

    it('throttle without retries fails with ThrottlingException', async () => {
      kms.setFaults({ throttle: 1 });
      const err = await rejection(client.send(new ListKeysCommand({})));
      expect(err.name).to.equal('ThrottlingException');
      expect(err.$metadata?.httpStatusCode).to.equal(400);
      await client.send(new ListKeysCommand({}));
    });

    it('fail injects the named error, for count requests or until cleared', async () => {
      kms.setFaults({ fail: { error: 'AccessDeniedException', count: 1 } });
      expect((await rejection(client.send(new ListKeysCommand({})))).name).to.equal('AccessDeniedException');
      await client.send(new ListKeysCommand({}));

      kms.setFaults({ fail: { error: 'KMSInternalException' } });
      for (let i = 0; i < 2; i++) {
        const err = await rejection(client.send(new ListKeysCommand({})));
        expect(err.name).to.equal('KMSInternalException');
        expect(err.$metadata?.httpStatusCode).to.equal(500);
      }
      kms.clearFaults();
      await client.send(new ListKeysCommand({}));
    });

    it('down drops requests without a response, and up restores service', async () => {
      const impatient = clientFor(kms, { requestHandler: { requestTimeout: 1000, connectionTimeout: 1000 } });
      try {
        await impatient.send(new ListKeysCommand({})); // keep-alive connection exists before going down
        kms.setFaults({ down: true });
        const err = await rejection(impatient.send(new ListKeysCommand({})));
        expect(err.$metadata?.httpStatusCode).to.equal(undefined);
        expect((err as { code?: string }).code).to.equal('ECONNRESET'); // socket destroyed: no response at all
        kms.setFaults({ down: false });
        await impatient.send(new ListKeysCommand({}));
      } finally {
        impatient.destroy();
      }
    });

    it('latencyMs delays responses', async () => {
      kms.setFaults({ latencyMs: 300 });
      const start = Date.now();
      await client.send(new ListKeysCommand({}));
      expect(Date.now() - start).to.be.at.least(290);
    });

    it('is controllable over plain HTTP at /_dev/faults and /_dev/stats', async () => {
      const post = (path: string, body: unknown): Promise<Response> =>
        fetch(`${kms.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

      expect((await post('/_dev/stats/reset', {})).status).to.equal(200);
      const set = await post('/_dev/faults', { throttle: 1, fail: null });
      expect(set.status).to.equal(200);
      expect(await set.json()).to.include({ throttle: 1, down: false, latencyMs: 0 });
      expect((await rejection(client.send(new ListKeysCommand({})))).name).to.equal('ThrottlingException');
      await client.send(new ListKeysCommand({}));
      await client.send(new ListAliasesCommand({}));

      const stats = await (await fetch(`${kms.url}/_dev/stats`)).json();
      expect(stats).to.deep.equal({ total: 3, byOperation: { ListKeys: 2, ListAliases: 1 } });

      expect((await post('/_dev/faults', { fail: { error: 'NoSuchThing' } })).status).to.equal(400);

      await post('/_dev/faults', { down: true });
      const impatient = clientFor(kms, { requestHandler: { requestTimeout: 1000, connectionTimeout: 1000 } });
      try {
        expect((await rejection(impatient.send(new ListKeysCommand({})))).$metadata?.httpStatusCode).to.equal(undefined);
        expect((await fetch(`${kms.url}/_dev/faults`)).status).to.equal(200); // control stays reachable
        expect(await (await post('/_dev/faults', { reset: true })).json()).to.deep.equal({
          latencyMs: 0,
          throttle: 0,
          fail: null,
          down: false,
        });
        await impatient.send(new ListKeysCommand({}));
      } finally {
        impatient.destroy();
      }

      await post('/_dev/faults', { throttle: 5 });
      await post('/_dev/faults', {});
      await client.send(new ListKeysCommand({}));
      expect((await post('/_dev/stats/reset', {})).status).to.equal(200);
      expect(await (await fetch(`${kms.url}/_dev/stats`)).json()).to.deep.equal({ total: 0, byOperation: {} });
    });
  });
});
