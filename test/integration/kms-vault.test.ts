import { expect } from 'chai';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { openVault } from '../../src/app/open-vault';
import { DEV_KMS_CREDENTIALS, DevKms, startDevKms } from '../../src/dev-kms/server';
import supertest from 'supertest';
import { createTestVault, TestVault } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

describe('vault on AWS KMS (dev KMS through the real SDK)', function () {
  this.timeout(30_000);
  let kms: DevKms;
  let arn: string;
  let v: TestVault;
  let tokens: string[];
  const savedEnv = { ...process.env };

  before(async () => {
    kms = await startDevKms();
    ({ arn } = await kms.createKey('pii-vault'));
    kms.createAlias('alias/pii-vault', arn);
    process.env.AWS_ACCESS_KEY_ID = DEV_KMS_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = DEV_KMS_CREDENTIALS.secretAccessKey;
  });
  after(async () => {
    process.env = savedEnv;
    await kms.close();
  });

  beforeEach(async () => {
    v = await createTestVault();
    Object.assign(v.config.keyProvider.kms, {
      keyId: 'alias/pii-vault',
      endpoint: kms.url,
      region: kms.region,
      timeoutMs: 500,
      maxAttempts: 2,
    });
    const items = Array.from({ length: 20 }, (_, i) => ({ type: 'pan', value: i % 2 ? '4111111111111111' : '5555555555554444' }));
    tokens = await v.tokenize(items);
  });
  afterEach(async () => {
    kms.clearFaults();
    await v.close();
  });

  const charge = (ts: string[]) => v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens: ts, purpose: 'charge' });
  const migrate = () =>
    v.http
      .post('/v1/keys/rewrap')
      .set(v.as('security'))
      .send({ target: { type: 'aws-kms', keyId: 'alias/pii-vault' } });

  it('migrates from the local master key to KMS with a rewrap, touching no record', async () => {
    const before = v.opened.store.db.prepare('SELECT token, nonce, ciphertext, tag FROM tokens ORDER BY token').all();
    const res = await migrate();
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(res.body).to.include({ kekId: arn, unchanged: 0 });
    expect(res.body.failed).to.deep.equal([]);
    const keks = (await v.http.get('/v1/keys?all=true').set(v.as('security'))).body.keys.map((k: { kekId: string }) => k.kekId);
    expect(new Set(keks)).to.deep.equal(new Set([arn]));
    expect(v.opened.store.db.prepare('SELECT token, nonce, ciphertext, tag FROM tokens ORDER BY token').all()).to.deep.equal(before);
    expect(JSON.parse(readFileSync(join(v.dir, 'config.json'), 'utf8')).keyProvider).to.deep.include({ type: 'aws-kms' });

    v.opened.keys.clear();
    const out = await charge(tokens);
    expect(out.body.items.map((i: { value: string }) => i.value)).to.deep.equal(
      tokens.map((_, i) => (i % 2 ? '4111111111111111' : '5555555555554444')),
    );
  });

  it('after the migration it restarts on KMS alone, without the master key file', async () => {
    await migrate();
    await v.opened.close();
    renameSync(join(v.dir, 'master.key'), join(v.dir, 'master.key.removed'));
    const config = loadConfig(v.dir, {}, { PII_VAULT_KMS_ENDPOINT: kms.url, PII_VAULT_KMS_REGION: kms.region });
    const reopened = await openVault(config);
    try {
      const http = supertest(createApp({ vault: reopened.vault, logger: createLogger('silent') }));
      const res = await http
        .post('/v1/detokenize')
        .set(v.as('gateway'))
        .send({ tokens: tokens.slice(0, 2), purpose: 'charge' });
      expect(res.body.items[1].value).to.equal('4111111111111111');
      const fresh = await http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ items: [{ type: 'ssn', value: '123-45-6789' }] });
      expect(fresh.status).to.equal(200);
    } finally {
      await reopened.close();
      renameSync(join(v.dir, 'master.key.removed'), join(v.dir, 'master.key'));
    }
  });

  it('calls KMS once per data key, not per request', async () => {
    await migrate();
    v.opened.keys.clear();
    kms.resetStats();
    for (let i = 0; i < 20; i++) {
      await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ items: [{ type: 'pan', value: '4111111111111111' }] });
      await charge(tokens.slice(0, 3));
    }
    // data + audit keys for default: one Decrypt each, whatever the number of requests.
    expect(kms.stats().byOperation.Decrypt ?? 0).to.be.at.most(2);
    expect(kms.stats().total).to.be.at.most(3);
  });

  it('while KMS is down: cached keys serve, uncached ones give 503 kms_unavailable, /readyz says so, and it recovers alone', async () => {
    await migrate();
    await charge(tokens.slice(0, 1)); // warm the data and audit keys
    kms.setFaults({ down: true });

    const cached = await charge(tokens);
    expect(cached.status).to.equal(200);
    expect(cached.body.items.every((i: { value?: string }) => typeof i.value === 'string')).to.equal(true);
    const more = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'pan', value: '4111111111111111' }] });
    expect(more.status).to.equal(200);

    v.opened.vault.deps.policy().principals.billing.tenants = ['default', 'acme'];
    const uncached = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'pan', value: '4111111111111111' }] });
    expect(uncached.status).to.equal(503);
    expect(uncached.body.error.code).to.equal('kms_unavailable');
    expect(uncached.body.error.message).to.match(/unreachable/);
    expect(JSON.stringify(uncached.body)).not.to.match(/at .*\.js/);

    const ready = await v.http.get('/readyz');
    expect(ready.status).to.equal(503);
    expect(ready.body.checks.keyProvider).to.equal('unavailable');

    kms.clearFaults();
    const recovered = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'pan', value: '4111111111111111' }] });
    expect(recovered.status).to.equal(200);
    await waitFor(async () => (await v.http.get('/readyz')).status === 200, { what: 'readiness to recover' });
  });

  it('throttling shorter than the retries is invisible to callers', async () => {
    await migrate();
    v.opened.keys.clear();
    kms.setFaults({ throttle: 1 });
    const res = await charge(tokens.slice(0, 2));
    expect(res.status).to.equal(200);
    expect(res.body.items[0].value).to.equal('5555555555554444');
  });

  it('a wrapped data key moved to another tenant does not unwrap (encryption context)', async () => {
    await migrate();
    v.opened.vault.deps.policy().principals.billing.tenants = ['default', 'acme'];
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'pan', value: '4111111111111111' }] });
    const db = v.opened.store.db;
    const fromDefault = db.prepare("SELECT wrapped FROM data_keys WHERE tenant = 'default' AND purpose = 'data'").get() as {
      wrapped: Buffer;
    };
    db.prepare("UPDATE data_keys SET wrapped = ? WHERE tenant = 'acme' AND purpose = 'data'").run(fromDefault.wrapped);
    v.opened.keys.clear();
    v.opened.vault.deps.policy().principals.gateway.tenants = ['*'];
    const acmeToken = (db.prepare("SELECT token FROM tokens WHERE tenant = 'acme'").get() as { token: string }).token;
    const res = await charge([acmeToken]);
    expect(res.status).to.equal(200);
    expect(res.body.items[0]).to.deep.equal({ token: acmeToken, error: { code: 'integrity_failed' } });
  });
});
