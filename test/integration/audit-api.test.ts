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

  it('verifies an intact chain and names the first edited or deleted row', async () => {
    for (let i = 0; i < 5; i++) await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    const ok = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(ok.status).to.equal(200);
    expect(ok.body).to.include({ ok: true });
    expect(ok.body.rows).to.be.greaterThan(5);

    v.opened.store.db.prepare("UPDATE audit SET outcome = 'deny' WHERE seq = 4").run();
    const edited = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(edited.body).to.include({ ok: false, firstBadSeq: 4 });

    v.opened.store.db.prepare('DELETE FROM audit WHERE seq = 3').run();
    const deleted = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(deleted.body).to.include({ ok: false, firstBadSeq: 3 });
  });
});
