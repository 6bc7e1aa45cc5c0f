import { expect } from 'chai';
import { KMSClient } from '@aws-sdk/client-kms';
import { AuditLog, AuditUnavailableError } from '../../src/audit/audit-log';
import { AwsKmsKeyProvider } from '../../src/crypto/aws-kms-key-provider';
import { context } from '../../src/keys/key-manager';
import { SYSTEM_TENANT } from '../../src/domain/tenants';
import { KeyPurpose } from '../../src/domain/keys';
import { DEV_KMS_CREDENTIALS, DevKms, startDevKms } from '../../src/dev-kms/server';
import { loadConfig } from '../../src/config';
import { openVault } from '../../src/app/open-vault';
import { createTestVault, openEmbeddedVault, TestVault } from '../helpers/test-vault';

/**
 * Someone who can write the database and use another KMS key of the same account plants a data
 * key (or the audit key) they know. The vault must refuse it before asking KMS, whatever the key.
 */
describe('KMS allow-list: a key record wrapped under a key outside keyId/allowedKeyIds is refused without a KMS call', function () {
  this.timeout(30_000);
  let kms: DevKms;
  let configured: string;
  let attackers: string;
  let allowedByAlias: string;
  let v: TestVault;
  let tokens: string[];
  const savedEnv = { ...process.env };

  before(async () => {
    kms = await startDevKms();
    ({ arn: configured } = await kms.createKey('pii-vault'));
    kms.createAlias('alias/pii-vault', configured);
    ({ arn: allowedByAlias } = await kms.createKey('pii-vault next'));
    kms.createAlias('alias/pii-vault-next', allowedByAlias);
    ({ arn: attackers } = await kms.createKey('same account, not configured'));
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
      allowedKeyIds: ['alias/pii-vault-next'],
      endpoint: kms.url,
      region: kms.region,
      timeoutMs: 1000,
      maxAttempts: 1,
    });
    tokens = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
    const migrated = await v.http
      .post('/v1/keys/rewrap')
      .set(v.as('security'))
      .send({ target: { type: 'aws-kms', keyId: 'alias/pii-vault' } });
    expect(migrated.status, JSON.stringify(migrated.body)).to.equal(200);
    expect(migrated.body.failed).to.deep.equal([]);
    // Warm every key the requests below need, so the only uncached one is the planted one.
    await v.tokenize([{ type: 'pan', value: '4111111111111111', deterministic: true }]);
    expect((await charge(tokens)).body.items[0].value).to.equal('4111111111111111');
  });
  afterEach(async () => {
    kms.clearFaults();
    await v.close();
  });

  const charge = (ts: string[]) => v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens: ts, purpose: 'charge' });
  const decrypts = () => kms.stats().byOperation.Decrypt ?? 0;

  /** Replaces a key record with a key the "attacker" knows, wrapped by `kekArn` under the right context. */
  async function plant(tenant: string, purpose: KeyPurpose, kekArn: string, recordedKekId = kekArn): Promise<void> {
    const client = new KMSClient({ region: kms.region, endpoint: kms.url, credentials: DEV_KMS_CREDENTIALS, maxAttempts: 1 });
    try {
      const wrapper = await new AwsKmsKeyProvider(kekArn, client).init();
      const { wrapped } = await wrapper.generateDataKey(context(tenant, purpose, 1));
      v.opened.store.db
        .prepare('UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE tenant = ? AND purpose = ? AND version = 1')
        .run(recordedKekId, wrapped.blob, tenant, purpose);
    } finally {
      client.destroy();
    }
    v.opened.keys.forget(tenant, purpose, 1);
    v.opened.keys.forgetActive(tenant, purpose);
    kms.resetStats();
  }

  it('a planted data key: tokenize is refused, detokenize answers integrity_failed, and KMS sees no Decrypt', async () => {
    await plant('default', 'data', attackers);

    const tokenized = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'ssn', value: '123-45-6789' }] });
    expect(tokenized.status, JSON.stringify(tokenized.body)).to.equal(503);
    expect(tokenized.body.error.code).to.equal('key_unavailable');

    const detokenized = await charge(tokens);
    expect(detokenized.status).to.equal(200);
    expect(detokenized.body.items[0]).to.deep.equal({ token: tokens[0], error: { code: 'integrity_failed' } });
    expect(decrypts(), 'Decrypt calls').to.equal(0);
    expect(v.opened.store.db.prepare("SELECT count(*) AS n FROM tokens WHERE type = 'ssn'").get()).to.deep.equal({ n: 0 });
  });

  it('a planted fingerprint key is refused the same way', async () => {
    await plant('default', 'fingerprint', attackers);
    const tokenized = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'pan', value: '5555555555554444', deterministic: true }] });
    expect(tokenized.status).to.equal(503);
    expect(decrypts(), 'Decrypt calls').to.equal(0);
  });

  it('a planted audit key: the vault refuses to start, readiness fails and no audit row is written, with no Decrypt', async () => {
    await plant(SYSTEM_TENANT, 'audit', attackers);

    const ready = await v.http.get('/readyz');
    expect(ready.status).to.equal(503);
    expect(ready.body.checks.keys).to.equal('unavailable');

    const rowsBefore = v.opened.store.db.prepare('SELECT count(*) AS n FROM audit').get();
    const append = await new AuditLog(v.opened.store, v.opened.keys)
      .append({
        ts: new Date().toISOString(),
        requestId: 'test',
        principal: 'test',
        tenant: null,
        action: 'vault:init',
        types: [],
        tokens: [],
        purpose: null,
        outcome: 'allow',
        reason: 'sealed under a planted key?',
        subjects: [],
      })
      .catch((err) => err);
    expect(append).to.be.instanceOf(AuditUnavailableError);
    expect(v.opened.store.db.prepare('SELECT count(*) AS n FROM audit').get()).to.deep.equal(rowsBefore);

    const restartConfig = loadConfig(v.dir, {}, { PII_VAULT_KMS_ENDPOINT: kms.url, PII_VAULT_KMS_REGION: kms.region });
    expect(restartConfig.keyProvider.type).to.equal('aws-kms');
    const reopened = await openVault(restartConfig).catch((err) => err);
    expect(reopened).to.be.instanceOf(Error);
    expect((reopened as Error).message)
      .to.contain(attackers)
      .and.to.match(/not keyProvider\.kms\.keyId or in allowedKeyIds/);
    expect(decrypts(), 'Decrypt calls').to.equal(0);
  });

  it('a record naming the configured key but holding another key’s blob is refused by KMS itself (KeyId is passed)', async () => {
    await plant('default', 'data', attackers, configured);
    const detokenized = await charge(tokens);
    expect(detokenized.body.items[0]).to.deep.equal({ token: tokens[0], error: { code: 'integrity_failed' } });
    expect(decrypts(), 'KMS was asked, and refused').to.equal(1);
  });

  it('a key in allowedKeyIds, given as an alias, is resolved to its ARN and may unwrap', async () => {
    await plant('default', 'data', allowedByAlias);
    const tokenized = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'ssn', value: '123-45-6789' }] });
    expect(tokenized.status, JSON.stringify(tokenized.body)).to.equal(200);
    expect(decrypts()).to.equal(1);
  });

  it('switching the KEK keeps the key switched away from allowed after a restart (data keys not yet moved stay readable)', async () => {
    const switched = await v.http
      .post('/v1/keys/rewrap')
      .set(v.as('security'))
      .send({ target: { type: 'aws-kms', keyId: 'alias/pii-vault-next' } });
    expect(switched.status, JSON.stringify(switched.body)).to.equal(200);
    await plant('default', 'data', configured); // as if its rewrap had not happened yet
    await v.opened.close();
    const config = loadConfig(v.dir, {}, { PII_VAULT_KMS_ENDPOINT: kms.url, PII_VAULT_KMS_REGION: kms.region });
    expect(config.keyProvider.kms).to.deep.include({ keyId: 'alias/pii-vault-next', allowedKeyIds: ['alias/pii-vault'] });
    v.opened = await openEmbeddedVault(config);
    expect(await v.opened.keys.keyVersion('default', 'data', 1)).to.have.length(32);
  });
});
