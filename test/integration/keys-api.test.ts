import { expect } from 'chai';
import { openVault } from '../../src/app/open-vault';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('key lifecycle API (local master key)', () => {
  let v: TestVault;
  let tokens: string[];
  beforeEach(async () => {
    v = await createTestVault();
    const items = Array.from({ length: 30 }, (_, i) => ({ type: 'text', value: `value-${i}`, subject: `cust_${i}` }));
    tokens = await v.tokenize(items);
  });
  afterEach(() => v.close());

  const security = () => v.as('security');
  const support = (ts: string[]) => v.http.post('/v1/detokenize').set(v.as('support')).send({ tokens: ts, reveal: 'masked' });
  const keyOf = async (version: number) =>
    (await v.http.get('/v1/keys').set(security())).body.keys.find(
      (k: { purpose: string; version: number }) => k.purpose === 'data' && k.version === version,
    );
  const values = async (ts: string[]) => {
    // support sees masked text as stars; read the plain values through the store for checks instead.
    const res = await support(ts);
    return res.body.items;
  };

  it('lists every key version with state, KEK and record counts', async () => {
    const res = await v.http.get('/v1/keys').set(security());
    expect(res.status).to.equal(200);
    const data = res.body.keys.find((k: { purpose: string }) => k.purpose === 'data');
    // 30 values and their 30 subject ids were sealed under v1.
    expect(data).to.include({ tenant: 'default', version: 1, state: 'active', kekId: 'local:v1', records: 30, encryptions: 60 });
    expect(res.body.keys.map((k: { purpose: string }) => k.purpose)).to.include.members(['data', 'fingerprint']);
    const all = await v.http.get('/v1/keys?all=true').set(security());
    expect(all.body.keys.map((k: { tenant: string }) => k.tenant)).to.include('_system');
  });

  it('rotate makes a new version active at once and keeps old records readable', async () => {
    const res = await v.http.post('/v1/keys/rotate').set(security()).send({});
    expect(res.status).to.equal(200);
    expect(res.body.rotated).to.deep.equal([{ tenant: 'default', purpose: 'data', version: 2, previousVersion: 1 }]);
    expect(await keyOf(1)).to.include({ state: 'decrypt-only', records: 30 });
    expect(await keyOf(2)).to.include({ state: 'active', records: 0 });
    const fresh = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'text', value: 'after' }] });
    const meta = await v.http.get(`/v1/tokens/${fresh.body.items[0].token}`).set(security());
    expect(meta.body.keyVersion).to.equal(2);
    const old = await values(tokens);
    expect(old.every((i: { reveal?: string }) => i.reveal === 'masked')).to.equal(true);
  });

  it('re-encrypts every record to the active version in a background job, then retire and destroy', async () => {
    await v.http.post('/v1/keys/rotate').set(security()).send({});
    const started = await v.http.post('/v1/keys/reencrypt').set(security()).send({});
    expect(started.status).to.equal(202);
    expect(started.body.job).to.include({ state: 'running', total: 30, kind: 'reencrypt' });
    await v.opened.vault.jobs.settled(started.body.job.id);
    const job = await v.http.get(`/v1/jobs/${started.body.job.id}`).set(security());
    expect(job.body).to.include({ state: 'completed', done: 30, failed: 0, total: 30, etaSeconds: 0 });
    expect(await keyOf(1)).to.include({ records: 0 });
    expect(await keyOf(2)).to.include({ records: 30 });

    // Every value and subject survived the move.
    const plain = v.opened.store.db.prepare('SELECT count(*) AS n FROM tokens WHERE key_version = 2').get() as { n: number };
    expect(plain.n).to.equal(30);
    const meta = await v.http.get(`/v1/tokens/${tokens[7]}`).set(v.as('billing'));
    expect(meta.body).to.include({ keyVersion: 2, subject: 'cust_7' });
    expect(await keyOf(2)).to.include({ encryptions: 60 });
    expect((await values(tokens)).every((i: { reveal?: string }) => i.reveal === 'masked')).to.equal(true);

    const retired = await v.http.post('/v1/keys/1/retire').set(security()).send({});
    expect(retired.status).to.equal(200);
    expect(retired.body.key).to.include({ version: 1, state: 'retired' });

    const unconfirmed = await v.http.post('/v1/keys/1/destroy').set(security()).send({});
    expect(unconfirmed.status).to.equal(400);
    expect(unconfirmed.body.error.code).to.equal('confirmation_required');
    expect(unconfirmed.body.error.details.confirm).to.equal('destroy default/data/v1');
    const destroyed = await v.http.post('/v1/keys/1/destroy').set(security()).send({ confirm: 'destroy default/data/v1' });
    expect(destroyed.status).to.equal(200);
    const row = v.opened.store.db
      .prepare("SELECT state, wrapped FROM data_keys WHERE tenant = 'default' AND purpose = 'data' AND version = 1")
      .get();
    expect(row).to.deep.equal({ state: 'destroyed', wrapped: null });
    expect((await values(tokens)).every((i: { reveal?: string }) => i.reveal === 'masked')).to.equal(true);

    const actions = (await v.opened.store.auditRows(0, 1000)).map((r) => r.action);
    expect(actions).to.include.members(['keys:rotate', 'keys:reencrypt', 'keys:retire', 'keys:destroy']);
  });

  it('refuses to retire the active version or one that records still use', async () => {
    const active = await v.http.post('/v1/keys/1/retire').set(security()).send({});
    expect(active.status).to.equal(409);
    expect(active.body.error.code).to.equal('key_active');
    await v.http.post('/v1/keys/rotate').set(security()).send({});
    const inUse = await v.http.post('/v1/keys/1/retire').set(security()).send({});
    expect(inUse.status).to.equal(409);
    expect(inUse.body.error).to.include({ code: 'key_in_use' });
    expect(inUse.body.error.details.records).to.equal(30);
    const notRetired = await v.http.post('/v1/keys/1/destroy').set(security()).send({ confirm: 'destroy default/data/v1' });
    expect(notRetired.body.error.code).to.equal('key_state_conflict');
    expect((await v.http.post('/v1/keys/9/retire').set(security()).send({})).status).to.equal(404);
  });

  it('leaves records it cannot open where they are and reports them as failed', async () => {
    await v.http.post('/v1/keys/rotate').set(security()).send({});
    v.opened.store.db.prepare('UPDATE tokens SET tag = zeroblob(16) WHERE token = ?').run(tokens[3]);
    const started = await v.http.post('/v1/keys/reencrypt').set(security()).send({});
    await v.opened.vault.jobs.settled(started.body.job.id);
    const job = await v.http.get(`/v1/jobs/${started.body.job.id}`).set(security());
    expect(job.body).to.include({ state: 'completed', done: 29, failed: 1 });
    const retire = await v.http.post('/v1/keys/1/retire').set(security()).send({});
    expect(retire.body.error.code).to.equal('key_in_use');
  });

  it('a tokenize that raced a rotation is sealed again under the new key, never stored under the old one', async () => {
    const keys = v.opened.vault.deps.keys;
    const original = keys.activeKey.bind(keys);
    let raced = false;
    keys.activeKey = async (tenant, purpose) => {
      const key = await original(tenant, purpose);
      if (purpose === 'data' && !raced) {
        raced = true;
        await v.http.post('/v1/keys/rotate').set(security()).send({}); // commits while this request holds v1
      }
      return key;
    };
    const res = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'text', value: 'raced' }] });
    keys.activeKey = original;
    expect(res.status).to.equal(200);
    expect(raced).to.equal(true);
    const meta = await v.http.get(`/v1/tokens/${res.body.items[0].token}`).set(security());
    expect(meta.body.keyVersion).to.equal(2);
    expect(await keyOf(1)).to.include({ records: 30 });
  });

  it('rotates a data key automatically when it has encrypted too many values', async () => {
    v.opened.vault.deps.rotation.maxEncryptions = 75;
    const before = await keyOf(1);
    expect(before.encryptions).to.equal(60);
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: Array.from({ length: 10 }, (_, i) => ({ type: 'text', value: `more ${i}` })) });
    expect(await keyOf(2)).to.include({ state: 'active', records: 10, encryptions: 10 });
    const row = (await v.opened.store.auditRows(0, 1000)).find((r) => r.action === 'keys:rotate')!;
    expect(row).to.include({ principal: 'system', reason: 'data key rotation (automatic: encryption count)' });
  });

  it('rotates a data key automatically when it is too old', async () => {
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 91 * 86_400_000;
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'text', value: 'late' }] });
    expect(await keyOf(2)).to.include({ state: 'active', records: 1 });
  });

  it('adds a local master-key version and rewraps every data key under it, touching no record', async () => {
    const before = v.opened.store.db.prepare('SELECT token, ciphertext FROM tokens ORDER BY token').all();
    const { MasterKeyring } = await import('../../src/crypto/local-key-provider');
    const file = `${v.dir}/master.key`;
    MasterKeyring.load(file).withNewVersion().save(file, false);
    const res = await v.http.post('/v1/keys/rewrap').set(security()).send({});
    expect(res.status).to.equal(200);
    expect(res.body).to.include({ kekId: 'local:v2', unchanged: 0 });
    expect(res.body.rewrapped).to.be.greaterThan(2);
    expect(res.body.failed).to.deep.equal([]);
    const keks = (await v.http.get('/v1/keys?all=true').set(security())).body.keys.map((k: { kekId: string }) => k.kekId);
    expect(new Set(keks)).to.deep.equal(new Set(['local:v2']));
    expect(v.opened.store.db.prepare('SELECT token, ciphertext FROM tokens ORDER BY token').all()).to.deep.equal(before);
    v.opened.keys.clear();
    expect((await values(tokens)).every((i: { reveal?: string }) => i.reveal === 'masked')).to.equal(true);
  });

  it('refuses key operations to principals without keys:* grants, and audits the denial', async () => {
    for (const [method, path] of [
      ['get', '/v1/keys'],
      ['post', '/v1/keys/rotate'],
      ['post', '/v1/keys/rewrap'],
      ['post', '/v1/keys/reencrypt'],
      ['post', '/v1/keys/1/retire'],
      ['post', '/v1/keys/1/destroy'],
    ] as const) {
      const res = await v.http[method](path)
        .set(v.as('support'))
        .send(method === 'post' ? {} : undefined);
      expect(res.status, path).to.equal(403);
    }
    const denials = (await v.opened.store.auditRows(0, 1000)).filter((r) => r.outcome === 'deny' && r.action.startsWith('keys:'));
    expect(denials).to.have.length(6);
  });

  it('validates key operation bodies', async () => {
    expect((await v.http.post('/v1/keys/rotate').set(security()).send({ tenant: 'Bad Tenant' })).body.error.code).to.equal(
      'invalid_request',
    );
    expect(
      (
        await v.http
          .post('/v1/keys/rewrap')
          .set(security())
          .send({ target: { type: 'gcp' } })
      ).body.error.code,
    ).to.equal('invalid_request');
    const unconfigured = await v.http
      .post('/v1/keys/rewrap')
      .set(security())
      .send({ target: { type: 'aws-kms', keyId: 'arn:aws:kms:us-east-1:999999999999:key/attacker' } });
    expect(unconfigured.status).to.equal(403);
    expect(unconfigured.body.error.message).to.match(/not configured/);
    expect(unconfigured.body.error.message, 'the caller key id is not echoed').not.to.contain('attacker');
    // The refused switch is audited as refused, and the caller's key id is written nowhere.
    const rewrapRows = (await v.opened.store.auditRows(0, 1_000_000)).filter((r) => r.action === 'keys:rewrap');
    expect(rewrapRows.at(-1)).to.include({ outcome: 'deny', reason: 'KEK switch refused (forbidden)' });
    expect(JSON.stringify(rewrapRows)).not.to.contain('attacker');
    expect((await v.http.post('/v1/keys/abc/retire').set(security()).send({})).status).to.equal(404);
    expect((await v.http.get('/v1/jobs/not-a-job').set(security())).status).to.equal(404);
  });

  it('picks up a rotation made by another process: no failed request, new records under the new version', async () => {
    // This process believes v1 is active (it is cached for a second); another process rotates.
    const other = await openVault(v.config);
    try {
      await other.vault.rotateKeys({ principal: other.vault.authenticate(v.keys.security)!, requestId: 'other-process' }, {});
    } finally {
      await other.close();
    }
    const res = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'text', value: 'after the other rotation' }] });
    expect(res.status).to.equal(200);
    const meta = await v.http.get(`/v1/tokens/${res.body.items[0].token}`).set(security());
    expect(meta.body.keyVersion).to.equal(2);
  });
});
