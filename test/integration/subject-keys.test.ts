import { expect } from 'chai';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { CONFIG_FILE, ConfigError, loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import type { OpenedVault } from '../../src/app/open-vault';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SUBJECT_KEYED_BINDING, subjectHash } from '../../src/service/record-crypto';
import { destroySubjectKey } from '../../src/service/subject-layer';
import { SYSTEM_CALLER } from '../../src/service/context';
import { AuditUnavailableError } from '../../src/store/vault-store';
import type { SubjectKeyStore } from '../../src/store/subject-key-store';
import { createTestVault, openEmbeddedVault, TestVault } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';
import { DEV_KMS_CREDENTIALS, DevKms, startDevKms } from '../../src/dev-kms/server';

const PAN = '4111111111111111';

const callerOf = (opened: OpenedVault, apiKey: string) => ({
  principal: opened.vault.authenticate(apiKey)!,
  requestId: 'subject-keys-test',
});

/** Destroys a subject's key and nothing else: an erasure cut short after its first step. */
async function shred(opened: OpenedVault, tenant: string, subject: string): Promise<boolean> {
  const { key } = await opened.keys.activeKey(tenant, 'fingerprint');
  return destroySubjectKey(opened.vault.deps, SYSTEM_CALLER, tenant, subjectHash(key, subject));
}

const OTHER_PAN = '5555555555554444';

describe('per-subject keys (crypto-shredding)', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault({}, { settings: { subjectKeys: { enabled: [{ tenant: '*', types: ['pan', 'email'] }] } } });
  });
  afterEach(() => v.close());

  const db = () => v.opened.store.db;
  const binding = (token: string) => (db().prepare('SELECT binding FROM tokens WHERE token = ?').get(token) as { binding: number }).binding;
  const charge = async (tokens: string[]) =>
    (await v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' })).body.items;
  const masked = async (tokens: string[]) => (await v.http.post('/v1/detokenize').set(v.as('support')).send({ tokens })).body.items;
  const keyStore = () => new Database(join(v.dir, 'subject-keys.db'), { readonly: true });

  it('seals the values of configured types with a subject under a per-subject key kept in subject-keys.db', async () => {
    const [pan, email, ssn, anonymous] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'email', value: 'jane@example.com', subject: 'cust_1' },
      { type: 'ssn', value: '123-45-6789', format: 'digits', subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN },
    ]);
    expect([pan, email, ssn, anonymous].map(binding)).to.deep.equal([SUBJECT_KEYED_BINDING, SUBJECT_KEYED_BINDING, 2, 2]);
    expect((await charge([pan, anonymous])).map((i: { value: string }) => i.value)).to.deep.equal([PAN, OTHER_PAN]);
    expect((await masked([email]))[0].value).to.equal('j***@example.com');
    const ks = keyStore();
    try {
      // One key for the one subject, stored wrapped (nonce, tag and 32 bytes), and never in the vault database.
      const rows = ks.prepare('SELECT tenant, length(wrapped) AS size FROM subject_keys').all();
      expect(rows).to.deep.equal([{ tenant: 'default', size: 60 }]);
    } finally {
      ks.close();
    }
    expect(db().prepare("SELECT name FROM sqlite_master WHERE name = 'subject_keys'").all()).to.deep.equal([]);
    // Neither values nor subject ids in the key store's files.
    for (const file of ['subject-keys.db', 'subject-keys.db-wal']) {
      const path = join(v.dir, file);
      const bytes = existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
      for (const secret of [PAN, 'cust_1', 'jane@example.com']) expect(bytes.includes(secret), `${secret} in ${file}`).to.equal(false);
    }
  });

  it("after its key is destroyed the subject's values answer erased, other subjects' still open; metadata shows no subject", async () => {
    const [mine, theirs] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN, subject: 'cust_2' },
    ]);
    const subjectOf = async (token: string) => (await v.http.get(`/v1/tokens/${token}`).set(v.as('billing'))).body.subject;
    expect(await subjectOf(mine)).to.equal('cust_1');
    expect(await shred(v.opened, 'default', 'cust_1')).to.equal(true);
    expect(await shred(v.opened, 'default', 'cust_1')).to.equal(false);
    expect(await charge([mine, theirs])).to.deep.equal([
      { token: mine, error: { code: 'erased' } },
      { token: theirs, type: 'pan', value: OTHER_PAN, reveal: 'plain' },
    ]);
    expect(await subjectOf(mine)).to.equal(null);
    expect(await subjectOf(theirs)).to.equal('cust_2');
    const row = (await v.opened.store.auditRows(0, 10_000)).filter((r) => r.action === 'detokenize').at(-1)!;
    expect(row.reason).to.equal('1 erased');
    // An export by a caller the policy shows values to lists the record as erased, with no value.
    v.opened.vault.deps.policy().roles.support.push({ actions: ['subject:export'] });
    const exported = await v.http.post('/v1/subjects/export').set(v.as('support')).send({ subject: 'cust_1' });
    expect(exported.status, JSON.stringify(exported.body)).to.equal(200);
    expect(exported.body.records).to.have.length(1);
    expect(exported.body.records[0]).to.deep.include({ token: mine, value: null, reveal: 'redacted', error: { code: 'erased' } });
  });

  it('erasure (POST /v1/subjects/erase) destroys the key first, audited before it is destroyed, then deletes the records', async () => {
    const [mine, theirs] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN, subject: 'cust_2' },
    ]);
    const res = await v.http.post('/v1/subjects/erase').set(v.as('security')).send({ subject: 'cust_1' });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(res.body).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
    const rows = (await v.opened.store.auditRows(0, 10_000)).filter((r) => r.action === 'subject:erase');
    expect(rows.map((r) => r.reason)).to.deep.equal(['subject key destroyed (crypto-shredding)', 'erased 1 records and the subject row']);
    const ks = keyStore();
    try {
      expect(ks.prepare('SELECT count(*) AS n FROM subject_keys').get()).to.deep.equal({ n: 1 });
    } finally {
      ks.close();
    }
    expect((await charge([mine, theirs])).map((i: { error?: { code: string } }) => i.error?.code ?? 'ok')).to.deep.equal([
      'not_found',
      'ok',
    ]);
  });

  it('erasure also destroys a key that a concurrent tokenize created after the erasure looked (its records were erased)', async () => {
    await v.tokenize([{ type: 'pan', value: OTHER_PAN, deterministic: true }]); // the tenant has its keys
    const keys = v.opened.vault.deps.subjectKeys.keys!;
    const has = keys.has.bind(keys);
    let raced: string | undefined;
    // The interleaving: the subject has no key when the erasure looks; a tokenize then creates one and commits its record.
    keys.has = async (tenant, hash) => {
      const answer = await has(tenant, hash);
      if (raced === undefined) [raced] = await v.tokenize([{ type: 'pan', value: PAN, subject: 'cust_1' }]);
      return answer;
    };
    try {
      const res = await v.http.post('/v1/subjects/erase').set(v.as('security')).send({ subject: 'cust_1' });
      expect(res.body).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
    } finally {
      keys.has = has;
    }
    const ks = keyStore();
    try {
      // Left in place, the key would still open the erased record in any backup of the vault database.
      expect(ks.prepare('SELECT count(*) AS n FROM subject_keys').get()).to.deep.equal({ n: 0 });
    } finally {
      ks.close();
    }
    expect((await charge([raced!]))[0].error.code).to.equal('not_found');
  });

  it('erasure fails closed: when the audit row cannot be written the key is not destroyed', async () => {
    const [mine] = await v.tokenize([{ type: 'pan', value: PAN, subject: 'cust_1' }]);
    const audit = v.opened.vault.deps.audit;
    const append = audit.append.bind(audit);
    audit.append = () => Promise.reject(new AuditUnavailableError(new Error('disk full')));
    try {
      const res = await v.http.post('/v1/subjects/erase').set(v.as('security')).send({ subject: 'cust_1' });
      expect(res.status).to.equal(503);
      expect(res.body.error.code).to.equal('audit_unavailable');
    } finally {
      audit.append = append;
    }
    expect((await charge([mine]))[0].value).to.equal(PAN);
  });

  it('a destroyed key is gone from the key store file and its WAL', async () => {
    await v.tokenize([{ type: 'pan', value: PAN, subject: 'cust_1' }]);
    const ks = keyStore();
    const wrapped = (ks.prepare('SELECT wrapped FROM subject_keys').get() as { wrapped: Buffer }).wrapped;
    ks.close();
    await shred(v.opened, 'default', 'cust_1');
    for (const file of ['subject-keys.db', 'subject-keys.db-wal']) {
      const path = join(v.dir, file);
      if (existsSync(path)) expect(readFileSync(path).includes(wrapped), file).to.equal(false);
    }
  });

  it('a new token for an erased subject gets a new key, and a deterministic token of an erased record is replaced', async () => {
    const item = { type: 'email', value: 'jane@example.com', subject: 'cust_1', deterministic: true };
    const [before] = await v.tokenize([item]);
    await shred(v.opened, 'default', 'cust_1');
    const [after] = await v.tokenize([item]);
    expect(after).to.not.equal(before);
    expect(
      (await masked([before, after])).map((i: { error?: { code: string }; value?: string }) => i.error?.code ?? i.value),
    ).to.deep.equal(['not_found', 'j***@example.com']);
    const [again] = await v.tokenize([item]);
    expect(again).to.equal(after);
  });

  it('the subject-keyed marker cannot be flipped by a database writer (either way)', async () => {
    const [keyed, plain] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'ssn', value: '123-45-6789', format: 'digits', subject: 'cust_1' },
    ]);
    db().prepare('UPDATE tokens SET binding = 2 WHERE token = ?').run(keyed);
    db().prepare('UPDATE tokens SET binding = 3 WHERE token = ?').run(plain);
    expect((await charge([keyed]))[0]).to.deep.equal({ token: keyed, error: { code: 'integrity_failed' } });
    expect((await masked([plain]))[0]).to.deep.equal({ token: plain, error: { code: 'integrity_failed' } });
  });

  it("a subject key moved to another subject's row in the key store does not open (integrity_failed)", async () => {
    const [one, two] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN, subject: 'cust_2' },
    ]);
    v.opened.vault.deps.subjectKeys.keys!.clear();
    const ks = new Database(join(v.dir, 'subject-keys.db'));
    const [a, b] = ks.prepare('SELECT subject_hash, wrapped FROM subject_keys').all() as { subject_hash: Buffer; wrapped: Buffer }[];
    ks.prepare('UPDATE subject_keys SET wrapped = ? WHERE subject_hash = ?').run(b.wrapped, a.subject_hash);
    ks.close();
    const codes = (await charge([one, two])).map((i: { error?: { code: string } }) => i.error?.code ?? 'ok');
    expect(codes.sort()).to.deep.equal(['integrity_failed', 'ok']);
  });

  it('rotation and the re-encryption job move the outer layer only: records stay subject-keyed and open, and erasable', async () => {
    const [keyed, other] = await v.tokenize([
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN, subject: 'cust_2' },
    ]);
    expect((await v.http.post('/v1/keys/rotate').set(v.as('security')).send({})).status).to.equal(200);
    const { job } = (await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({})).body;
    await waitFor(async () => (await v.opened.store.job(job.id))?.state === 'completed', { what: 'the re-encryption job' });
    expect((await v.opened.store.job(job.id))!.failed).to.equal(0);
    const rows = db().prepare('SELECT key_version, binding FROM tokens WHERE token IN (?, ?)').all(keyed, other);
    expect(rows).to.deep.equal([
      { key_version: 2, binding: SUBJECT_KEYED_BINDING },
      { key_version: 2, binding: SUBJECT_KEYED_BINDING },
    ]);
    expect((await charge([keyed]))[0].value).to.equal(PAN);
    expect((await v.http.get(`/v1/tokens/${keyed}`).set(v.as('billing'))).body.subject).to.equal('cust_1');
    await shred(v.opened, 'default', 'cust_1');
    expect((await charge([keyed, other])).map((i: { error?: { code: string } }) => i.error?.code ?? 'ok')).to.deep.equal(['erased', 'ok']);
    // Nothing is left behind for a second job: subject-keyed records are at the current binding.
    expect(await v.opened.store.recordsBehind('default', 2, 2, '', 100)).to.deep.equal([]);
  });

  it('/readyz checks the subject key store when there is one', async () => {
    const res = await v.http.get('/readyz');
    expect(res.body).to.deep.equal({ status: 'ready', checks: { database: 'ok', keys: 'ok', keyProvider: 'ok', subjectKeys: 'ok' } });
  });

  it('turned off, new records are sealed as before and subject-keyed ones still open (the key store is still opened)', async () => {
    const [keyed] = await v.tokenize([{ type: 'pan', value: PAN, subject: 'cust_1' }]);
    const file = join(v.dir, CONFIG_FILE);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), subjectKeys: { enabled: [] } }));
    const off = await openEmbeddedVault(loadConfig(v.dir, {}, {}), { logger: createLogger('silent') });
    try {
      const { items } = await off.vault.tokenize(callerOf(off, v.keys.billing), {
        items: [{ type: 'pan', value: OTHER_PAN, subject: 'cust_1' }],
      });
      const plain = items[0].token;
      expect([binding(keyed), binding(plain)]).to.deep.equal([SUBJECT_KEYED_BINDING, 2]);
      const read = await off.vault.detokenize(callerOf(off, v.keys.gateway), { tokens: [keyed, plain], purpose: 'charge' });
      expect(read.items.map((i) => ('value' in i ? i.value : i.error.code))).to.deep.equal([PAN, OTHER_PAN]);
    } finally {
      await off.close();
    }
  });

  it('a SQLite vault whose keys are in subject-keys.db does not start pointed at a key database (they would all read as erased)', async () => {
    await v.tokenize([{ type: 'pan', value: PAN, subject: 'cust_1' }]);
    const config = { ...v.config, subjectKeys: { ...v.config.subjectKeys, databaseUrl: 'postgres://nobody@127.0.0.1:1/none' } };
    const err = await openEmbeddedVault(config, { logger: createLogger('silent') }).catch((e: Error) => e);
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as Error).message).to.contain('move them with `pii-vault migrate`, or unset subjectKeys.databaseUrl');
  });

  it('a detokenize of many subjects reads their keys from the key store in one call, not one per record', async () => {
    const subjects = Array.from({ length: 6 }, (_, i) => `cust_${i}`);
    const tokens = await v.tokenize(subjects.map((subject) => ({ type: 'pan', value: PAN, subject })));
    await shred(v.opened, 'default', 'cust_5');
    // Another instance: nothing of these keys in its memory yet.
    const other = await openEmbeddedVault(v.config, { logger: createLogger('silent') });
    try {
      const store = (other.vault.deps.subjectKeys.keys as unknown as { store: SubjectKeyStore }).store;
      const calls: string[] = [];
      for (const method of ['get', 'getMany'] as const) {
        const original = store[method].bind(store) as (...args: unknown[]) => Promise<unknown>;
        (store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => (calls.push(method), original(...args));
      }
      const { items } = await other.vault.detokenize(callerOf(other, v.keys.gateway), { tokens, purpose: 'charge' });
      expect(items.map((i) => ('value' in i ? i.value : i.error.code))).to.deep.equal([PAN, PAN, PAN, PAN, PAN, 'erased']);
      // The erased subject's key is read once more, alone, when its record is opened.
      expect(calls).to.deep.equal(['getMany', 'get']);
    } finally {
      await other.close();
    }
  });

  it('another instance keeps a destroyed key until subjectKeys.cacheTtlSeconds: what it seals meanwhile is erased too', async () => {
    const other = await openEmbeddedVault(v.config, { logger: createLogger('silent') });
    try {
      const billing = callerOf(other, v.keys.billing);
      await other.vault.tokenize(billing, { items: [{ type: 'pan', value: PAN, subject: 'cust_1' }] }); // caches the key
      await shred(v.opened, 'default', 'cust_1');
      const { items } = await other.vault.tokenize(billing, { items: [{ type: 'pan', value: OTHER_PAN, subject: 'cust_1' }] });
      expect(await charge([items[0].token])).to.deep.equal([{ token: items[0].token, error: { code: 'erased' } }]);
    } finally {
      await other.close();
    }
  });
});

describe('per-subject keys on AWS KMS (dev KMS)', function () {
  this.timeout(30_000);
  let kms: DevKms;
  let v: TestVault;
  const savedEnv = { ...process.env };

  before(async () => {
    kms = await startDevKms();
    kms.createAlias('alias/pii-vault', (await kms.createKey('pii-vault')).arn);
    process.env.AWS_ACCESS_KEY_ID = DEV_KMS_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = DEV_KMS_CREDENTIALS.secretAccessKey;
  });
  after(async () => {
    process.env = savedEnv;
    await kms.close();
  });
  beforeEach(async () => {
    v = await createTestVault({}, { settings: { subjectKeys: { enabled: [{ tenant: '*', types: ['pan'] }] } } });
    Object.assign(v.config.keyProvider.kms, { keyId: 'alias/pii-vault', endpoint: kms.url, region: kms.region });
    const rewrap = await v.http
      .post('/v1/keys/rewrap')
      .set(v.as('security'))
      .send({ target: { type: 'aws-kms', keyId: 'alias/pii-vault' } });
    expect(rewrap.status, JSON.stringify(rewrap.body)).to.equal(200);
  });
  afterEach(() => v.close());

  it('subject keys cost no KMS call: however many subjects, one Decrypt per data, fingerprint and audit key', async () => {
    v.opened.keys.clear();
    kms.resetStats();
    const items = Array.from({ length: 30 }, (_, i) => ({ type: 'pan', value: PAN, subject: `cust_${String.fromCharCode(97 + i)}` }));
    const tokens = await v.tokenize(items);
    v.opened.vault.deps.subjectKeys.keys!.clear();
    const res = await v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' });
    expect(res.body.items.every((i: { value?: string }) => i.value === PAN)).to.equal(true);
    expect(kms.stats().byOperation.Decrypt ?? 0).to.be.at.most(3);
    expect(kms.stats().total).to.be.at.most(3);
  });
});
