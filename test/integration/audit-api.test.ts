import { expect } from 'chai';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('audit API', () => {
  let v: TestVault;
  let token: string;
  beforeEach(async () => {
    v = await createTestVault();
    [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
  });
  afterEach(() => v.close());

  const rows = () => v.opened.store.auditRows(0, 10_000);

  it('appends exactly one row per decision, allowed or denied', async () => {
    const before = (await rows()).length;
    await v.http
      .post('/v1/detokenize')
      .set(v.as('gateway'))
      .send({ tokens: [token], purpose: 'charge' });
    await v.http
      .post('/v1/detokenize')
      .set(v.as('billing'))
      .send({ tokens: [token] });
    await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    await v.http.get(`/v1/tokens/${token}`).set(v.as('gateway'));
    const added = (await rows()).slice(before);
    expect(added.map((r) => [r.principal, r.action, r.outcome])).to.deep.equal([
      ['gateway', 'detokenize', 'allow'],
      ['billing', 'detokenize', 'deny'],
      ['support', 'read-metadata', 'allow'],
      ['gateway', 'read-metadata', 'deny'],
    ]);
    expect(added[0]).to.include({ purpose: 'charge', tenant: 'default' });
    expect(added[0].tokens).to.deep.equal([token]);
    expect(added[0].types).to.deep.equal(['pan']);
  });

  it('lists rows in order with paging, for security only', async () => {
    v.opened.vault.deps.policy().principals.security.tenants = ['default'];
    for (let i = 0; i < 5; i++) await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    const first = await v.http.get('/v1/audit?limit=3').set(v.as('security'));
    expect(first.status).to.equal(200);
    // Row 1 is the vault's own (init, no tenant): a principal scoped to `default` does not see it.
    expect(first.body.items.map((r: { seq: number }) => r.seq)).to.deep.equal([2, 3, 4]);
    expect(first.body.next).to.equal(4);
    const second = await v.http.get(`/v1/audit?after=${first.body.next}&limit=3`).set(v.as('security'));
    expect(second.body.items[0].seq).to.equal(5);
    expect(second.body.items[0].hash).to.match(/^[0-9a-f]{64}$/);
    const denied = await v.http.get('/v1/audit').set(v.as('support'));
    expect(denied.status).to.equal(403);
  });

  it("shows a tenant-scoped principal only its tenants' rows", async () => {
    const policy = v.opened.vault.deps.policy();
    policy.principals.billing.tenants = ['default', 'acme'];
    policy.principals.security.tenants = ['default'];
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'text', value: 'x' }] });
    const scoped = await v.http.get('/v1/audit?limit=1000').set(v.as('security'));
    expect(scoped.body.items.every((r: { tenant: string }) => r.tenant === 'default')).to.equal(true);
    policy.principals.security.tenants = ['*'];
    const all = await v.http.get('/v1/audit?limit=1000').set(v.as('security'));
    expect(all.body.items.map((r: { tenant: string | null }) => r.tenant)).to.include.members(['acme', null, 'default']);
  });

  it('verifies an intact chain and names the first edited or deleted row since the last verification', async () => {
    for (let i = 0; i < 5; i++) await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    const ok = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(ok.status).to.equal(200);
    expect(ok.body).to.include({ ok: true, verifiedFrom: 1, checkpoint: 'none' });
    expect(ok.body.rows).to.be.greaterThan(5);
    const checkpointed = ok.body.headSeq;

    for (let i = 0; i < 5; i++) await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    v.opened.store.db.prepare("UPDATE audit SET outcome = 'deny' WHERE seq = ?").run(checkpointed + 3);
    const edited = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(edited.body).to.include({ ok: false, firstBadSeq: checkpointed + 3, verifiedFrom: checkpointed + 1, checkpoint: 'used' });

    v.opened.store.db.prepare('DELETE FROM audit WHERE seq = ?').run(checkpointed + 2);
    const deleted = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(deleted.body).to.include({ ok: false, firstBadSeq: checkpointed + 2 });
  });

  it('an edit before the checkpoint is not re-checked by the API, and is found by a full verification', async () => {
    expect((await v.http.get('/v1/audit/verify').set(v.as('security'))).body.ok).to.equal(true);
    v.opened.store.db.prepare("UPDATE audit SET outcome = 'deny' WHERE seq = 2").run();
    expect((await v.http.get('/v1/audit/verify').set(v.as('security'))).body).to.include({ ok: true, checkpoint: 'used' });
    expect(await v.opened.audit.verify({ full: true })).to.include({ ok: false, firstBadSeq: 2, checkpoint: 'valid' });
  });

  it('tells a tenant-scoped auditor whether the chain is intact and nothing about other rows', async () => {
    const policy = v.opened.vault.deps.policy();
    policy.principals.billing.tenants = ['default', 'acme'];
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'text', value: 'x' }] });
    policy.principals.security.tenants = ['default'];
    const scoped = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(scoped.status).to.equal(200);
    expect(scoped.body).to.deep.equal({ ok: true, scope: 'tenants' });

    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'text', value: 'y' }] });
    v.opened.store.db
      .prepare("UPDATE audit SET principal = 'mallory' WHERE seq = (SELECT max(seq) FROM audit WHERE tenant = 'acme')")
      .run();
    const broken = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(broken.body).to.deep.equal({ ok: false, scope: 'tenants' });
  });

  it('a verification of a big chain lets the server answer meanwhile: /healthz is answered before it ends', async function () {
    this.timeout(120_000);
    const filler = { requestId: 'r', principal: 'gateway', tenant: 'default', action: 'detokenize', types: ['pan'], purpose: 'charge' };
    const rows = Array.from({ length: 20_000 }, (_, i) =>
      v.opened.audit.append({
        ...filler,
        ts: new Date().toISOString(),
        tokens: [`tok_${i}`],
        outcome: 'allow',
        reason: null,
        subjects: [],
      }),
    );
    await Promise.all(rows);

    const events: string[] = [];
    // The verification starts first; the probe is sent only after it began.
    const verified = v.opened.audit.verify().then((r) => events.push(`verify ok=${r.ok}`));
    const probed = v.http.get('/healthz').then((res) => events.push(`healthz ${res.status}`));
    await Promise.all([verified, probed]);
    expect(events).to.deep.equal(['healthz 200', 'verify ok=true']);
  });

  it('a 1,000-token detokenize stores a compact audit row that GET /v1/audit shows unchanged', async () => {
    const tokens = await v.tokenize(Array.from({ length: 1000 }, (_, i) => ({ type: 'text', value: `value ${i}` })));
    const res = await v.http.post('/v1/detokenize').set(v.as('support')).send({ tokens });
    expect(res.status).to.equal(200);
    const { seq, stored } = v.opened.store.db
      .prepare("SELECT seq, length(tokens) AS stored FROM audit WHERE action = 'detokenize' ORDER BY seq DESC LIMIT 1")
      .get() as { seq: number; stored: number };
    expect(stored).to.be.below(0.6 * JSON.stringify(tokens).length);
    const listed = await v.http.get(`/v1/audit?after=${seq - 1}&limit=1`).set(v.as('security'));
    expect(listed.body.items[0]).to.include({ seq, action: 'detokenize', principal: 'support' });
    expect(listed.body.items[0].tokens).to.deep.equal(tokens);
  });
});
