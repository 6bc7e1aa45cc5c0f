import { expect } from 'chai';
import { KMSClient } from '@aws-sdk/client-kms';
import { randomBytes } from 'node:crypto';
import { IntegrityError } from '../../src/crypto/aead';
import { AwsKmsKeyProvider, KmsUnavailableError } from '../../src/crypto/aws-kms-key-provider';
import { EncryptionContext } from '../../src/crypto/key-provider';
import { LocalKeyProvider, MasterKeyring } from '../../src/crypto/local-key-provider';
import { RoutingKeyProvider } from '../../src/crypto/routing-key-provider';
import { DEV_KMS_CREDENTIALS, DevKms, startDevKms } from '../../src/dev-kms/server';

describe('crypto / AwsKmsKeyProvider against the dev KMS, through the real SDK', () => {
  let kms: DevKms;
  let arn: string;
  const ctx: EncryptionContext = { tenant: 'default', purpose: 'data', version: '1' };

  const client = (maxAttempts = 3) =>
    new KMSClient({
      region: kms.region,
      endpoint: kms.url,
      credentials: DEV_KMS_CREDENTIALS,
      maxAttempts,
      requestHandler: { connectionTimeout: 500, requestTimeout: 1000 },
    });
  const provider = async (keyId = arn, maxAttempts = 3, allowed: string[] = []) =>
    new AwsKmsKeyProvider(keyId, client(maxAttempts), allowed).init();

  before(async () => {
    kms = await startDevKms();
    ({ arn } = await kms.createKey('pii-vault test'));
    kms.createAlias('alias/pii-vault-test', arn);
  });
  afterEach(() => {
    kms.clearFaults();
    kms.resetStats();
  });
  after(() => kms.close());

  it('DescribeKey at start-up resolves an alias to the key ARN, which becomes the KEK id', async () => {
    const p = await provider('alias/pii-vault-test');
    expect(p.describe()).to.deep.equal({ kind: 'aws-kms', kekId: arn });
    expect(p.owns(arn)).to.equal(true);
    expect(p.owns('local:v1')).to.equal(false);
  });

  it('generates a 256-bit data key that unwraps under the same encryption context', async () => {
    const p = await provider();
    const { plaintext, wrapped } = await p.generateDataKey(ctx);
    expect(plaintext).to.have.length(32);
    expect(wrapped.kekId).to.equal(arn);
    expect((await p.unwrap(wrapped, ctx)).equals(plaintext)).to.equal(true);
    const rewrapped = await p.wrap(plaintext, { ...ctx, version: '2' });
    expect((await p.unwrap(rewrapped, { ...ctx, version: '2' })).equals(plaintext)).to.equal(true);
  });

  it('a wrong encryption context (tenant, purpose or version) fails as an integrity error', async () => {
    const p = await provider();
    const { wrapped } = await p.generateDataKey(ctx);
    for (const other of [
      { ...ctx, tenant: 'acme' },
      { ...ctx, purpose: 'fingerprint' as const },
      { ...ctx, version: '2' },
    ]) {
      let caught: unknown;
      await p.unwrap(wrapped, other).catch((err) => (caught = err));
      expect(caught).to.be.instanceOf(IntegrityError);
    }
  });

  it('ReEncrypt moves a wrapped key to another KMS key without exposing it', async () => {
    const source = await provider();
    const { arn: otherArn } = await kms.createKey('other');
    const target = await provider(otherArn, 3, ['alias/pii-vault-test']);
    const { plaintext, wrapped } = await source.generateDataKey(ctx);
    const moved = await target.reEncrypt(wrapped, ctx);
    expect(moved.kekId).to.equal(otherArn);
    expect((await target.unwrap(moved, ctx)).equals(plaintext)).to.equal(true);
    expect(kms.stats().byOperation.ReEncrypt).to.equal(1);
  });

  it("rewrap is the providers' capability: KMS to KMS through ReEncrypt, local to KMS unwraps locally and Encrypts", async () => {
    const local = new LocalKeyProvider(MasterKeyring.generate());
    const { arn: otherArn } = await kms.createKey('rewrap target');
    const target = await provider(otherArn, 3, [arn]);
    const routing = new RoutingKeyProvider(target, [local]);
    const underKms = await (await provider()).generateDataKey(ctx);
    const underLocal = await local.generateDataKey(ctx);
    kms.resetStats();

    const fromKms = await routing.rewrap(underKms.wrapped, ctx);
    expect(kms.stats().byOperation).to.deep.equal({ ReEncrypt: 1 });
    const fromLocal = await routing.rewrap(underLocal.wrapped, ctx);
    expect(kms.stats().byOperation).to.deep.equal({ ReEncrypt: 1, Encrypt: 1 });

    for (const [moved, original] of [
      [fromKms, underKms],
      [fromLocal, underLocal],
    ] as const) {
      expect(moved.kekId).to.equal(otherArn);
      expect((await routing.unwrap(moved, ctx)).equals(original.plaintext)).to.equal(true);
    }
  });

  it('unwraps and re-encrypts only keys wrapped under keyId or allowedKeyIds (aliases resolved), refusing others before calling KMS', async () => {
    const { arn: outsider } = await kms.createKey('not configured');
    const wrapped = await (await provider(outsider)).wrap(randomBytes(32), ctx);
    const p = await provider(arn, 3, ['alias/pii-vault-test']);
    kms.resetStats();
    for (const attempt of [p.unwrap(wrapped, ctx), p.reEncrypt(wrapped, ctx)]) {
      const err = await attempt.catch((e) => e);
      expect(err).to.be.instanceOf(IntegrityError);
      expect(err.message).to.contain(outsider);
    }
    expect(kms.stats().total).to.equal(0);
    expect(p.owns(outsider)).to.equal(true); // judged (and refused) here, never routed elsewhere

    const { arn: next } = await kms.createKey('allowed by alias');
    kms.createAlias('alias/pii-vault-allowed', next);
    const viaAlias = await provider(arn, 3, ['alias/pii-vault-allowed']);
    const { plaintext, wrapped: underNext } = await (await provider(next)).generateDataKey(ctx);
    expect((await viaAlias.unwrap(underNext, ctx)).equals(plaintext)).to.equal(true);
  });

  it('a disabled key fails with a clear kms error, and so does start-up', async () => {
    const { arn: keyArn } = await kms.createKey('to disable');
    const p = await provider(keyArn);
    const { wrapped } = await p.generateDataKey(ctx);
    const admin = client();
    const { DisableKeyCommand, EnableKeyCommand } = await import('@aws-sdk/client-kms');
    await admin.send(new DisableKeyCommand({ KeyId: keyArn }));
    const err = await p.unwrap(wrapped, ctx).catch((e) => e);
    expect(err).to.be.instanceOf(KmsUnavailableError);
    expect(err.message).to.match(/disabled/);
    const startErr = await provider(keyArn).catch((e) => e);
    expect(startErr).to.be.instanceOf(KmsUnavailableError);
    await admin.send(new EnableKeyCommand({ KeyId: keyArn }));
    expect(await p.unwrap(wrapped, ctx)).to.have.length(32);
  });

  it('an unknown key fails at start-up as not found', async () => {
    const err = await provider('alias/does-not-exist').catch((e) => e);
    expect(err).to.be.instanceOf(KmsUnavailableError);
    expect(err.message).to.match(/not found/);
  });

  it('throttling is retried with backoff and then succeeds', async function () {
    this.timeout(15_000);
    const p = await provider(arn, 3);
    kms.resetStats();
    kms.setFaults({ throttle: 2 });
    expect(await p.wrap(randomBytes(32), ctx)).to.have.property('kekId', arn);
    expect(kms.stats().byOperation.Encrypt).to.equal(3);
  });

  it('throttling beyond the retries, access denied and an unreachable KMS map to kms errors without raw stacks', async () => {
    const p = await provider(arn, 1);
    kms.setFaults({ throttle: 1 });
    expect((await p.wrap(randomBytes(32), ctx).catch((e) => e)).message).to.match(/throttled/);
    kms.setFaults({ fail: { error: 'AccessDeniedException', count: 1 } });
    expect((await p.wrap(randomBytes(32), ctx).catch((e) => e)).message).to.match(/access denied/);
    kms.setFaults({ down: true });
    const down = await p.wrap(randomBytes(32), ctx).catch((e) => e);
    expect(down).to.be.instanceOf(KmsUnavailableError);
    expect(down.message).to.match(/unreachable/);
    expect(await p.healthy()).to.equal(false);
    kms.clearFaults();
    expect(await p.wrap(randomBytes(32), ctx)).to.have.property('kekId', arn);
  });

  it('refuses unsigned requests (the dev KMS checks SigV4)', async () => {
    const res = await fetch(kms.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'TrentService.DescribeKey' },
      body: JSON.stringify({ KeyId: arn }),
    });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { __type: string }).__type).to.equal('MissingAuthenticationTokenException');
  });
});
