import { expect } from 'chai';
import { luhnValid } from '../../src/domain/data-types';
import { createTestVault, TestVault } from '../helpers/test-vault';

/** 12-digit PANs with BIN 411111 and last 4 "1111": kept BIN and last 4 leave 2 random digits (90 tokens). */
const NARROW_PANS = Array.from({ length: 100 }, (_, i) => `411111${String(i).padStart(2, '0')}1111`).filter(luhnValid);

/** Issue 10 item 7: token spaces are per tenant; narrow formats need the policy's consent. */
describe('token spaces per tenant', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
    const policy = v.opened.vault.deps.policy();
    policy.principals.billing.tenants = ['default', 'acme'];
    policy.roles.billing[0].allowNarrowTokens = true;
  });
  afterEach(() => v.close());

  const narrow = (tenant: string, value: string) =>
    v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant, items: [{ type: 'pan', value, format: 'pan', preserve: 'bin6last4' }] });

  /** Tokenizes `value` in `tenant` until `count` distinct tokens exist there (collisions are retried). */
  async function fill(tenant: string, value: string, count: number): Promise<Set<string>> {
    const tokens = new Set<string>();
    for (let i = 0; i < 2_000 && tokens.size < count; i++) {
      const res = await narrow(tenant, value);
      if (res.status === 200) tokens.add(res.body.items[0].token);
      else expect(res.body.error.code).to.equal('token_collision');
    }
    return tokens;
  }

  it("a tenant that exhausts a narrow space leaves another tenant's untouched", async () => {
    expect((await fill('acme', NARROW_PANS[0], 90)).size, 'acme holds every token of the space').to.equal(90);
    const full = await narrow('acme', NARROW_PANS[1]);
    expect(full.body.error.code).to.equal('token_collision');
    const res = await narrow('default', NARROW_PANS[1]);
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
  });

  describe('one token string in two tenants', () => {
    let shared: string;
    beforeEach(async () => {
      // 60 + 60 distinct tokens out of 90 possible: at least 30 strings are in both tenants.
      const inDefault = await fill('default', NARROW_PANS[0], 60);
      const inAcme = await fill('acme', NARROW_PANS[1], 60);
      expect(inDefault.size).to.equal(60);
      expect(inAcme.size).to.equal(60);
      shared = [...inAcme].find((t) => inDefault.has(t))!;
      expect(shared).to.be.a('string');
    });

    const detokenize = (body: object) =>
      v.http
        .post('/v1/detokenize')
        .set(v.as('gateway'))
        .send({ purpose: 'charge', ...body });

    it('detokenize answers the only tenant the caller may touch', async () => {
      v.opened.vault.deps.policy().principals.gateway.tenants = ['acme'];
      const res = await detokenize({ tokens: [shared] });
      expect(res.body.items[0]).to.include({ token: shared, value: NARROW_PANS[1] });
    });

    it('detokenize across several tenants is ambiguous_token without a tenant, never one of the values', async () => {
      v.opened.vault.deps.policy().principals.gateway.tenants = ['default', 'acme'];
      const res = await detokenize({ tokens: [shared] });
      expect(res.body.items[0]).to.deep.equal({ token: shared, error: { code: 'ambiguous_token' } });
      expect((await detokenize({ tokens: [shared], tenant: 'acme' })).body.items[0].value).to.equal(NARROW_PANS[1]);
      expect((await detokenize({ tokens: [shared], tenant: 'default' })).body.items[0].value).to.equal(NARROW_PANS[0]);
      // A tenant the caller may not touch is not a way in.
      v.opened.vault.deps.policy().principals.gateway.tenants = ['default'];
      const refused = await detokenize({ tokens: [shared], tenant: 'acme' });
      expect(refused.status).to.equal(403);
      expect(JSON.stringify(refused.body)).not.to.contain(NARROW_PANS[1]);
    });

    it('GET and DELETE /v1/tokens/:token take ?tenant= and answer 409 ambiguous_token without it', async () => {
      const ambiguous = await v.http.get(`/v1/tokens/${shared}`).set(v.as('security'));
      expect(ambiguous.status).to.equal(409);
      expect(ambiguous.body.error.code).to.equal('ambiguous_token');
      const acme = await v.http.get(`/v1/tokens/${shared}?tenant=acme`).set(v.as('security'));
      expect(acme.status).to.equal(200);
      expect(acme.body).to.include({ token: shared, tenant: 'acme' });

      expect((await v.http.delete(`/v1/tokens/${shared}`).set(v.as('billing'))).status).to.equal(409);
      v.opened.vault.deps.policy().principals.billing.tenants = ['default'];
      expect((await v.http.delete(`/v1/tokens/${shared}?tenant=acme`).set(v.as('billing'))).status).to.equal(403);
      v.opened.vault.deps.policy().principals.billing.tenants = ['default', 'acme'];
      expect((await v.http.delete(`/v1/tokens/${shared}?tenant=acme`).set(v.as('billing'))).status).to.equal(204);
      const left = await v.http.get(`/v1/tokens/${shared}`).set(v.as('security'));
      expect(left.status).to.equal(200);
      expect(left.body.tenant).to.equal('default');
    });
  });

  describe('narrow formats', () => {
    beforeEach(() => {
      v.opened.vault.deps.policy().roles.billing[0].allowNarrowTokens = undefined;
    });

    it('are refused (403, audited) when they leave fewer than 6 random digits, unless the policy opts in', async () => {
      const cases = [
        { type: 'pan', value: NARROW_PANS[0], format: 'pan', preserve: 'bin6last4' },
        { type: 'pan', value: '378282246310005', format: 'pan', preserve: 'bin6last4' },
        { type: 'ssn', value: '123-45-6789', format: 'digits', preserve: 'last4' },
      ];
      for (const item of cases) {
        const res = await v.http
          .post('/v1/tokenize')
          .set(v.as('billing'))
          .send({ items: [{ type: 'text', value: 'x' }, item] });
        expect(res.status, JSON.stringify(item)).to.equal(403);
        expect(res.body.error).to.include({ code: 'forbidden' });
        expect(res.body.error.details).to.include({ index: 1 });
        expect(JSON.stringify(res.body)).not.to.contain(item.value);
        const last = (await v.opened.store.auditRows(0, 10_000)).at(-1)!;
        expect(last).to.include({ action: 'tokenize', outcome: 'deny', reason: 'token format too narrow' });
      }
      // 16 digits keeping BIN and last 4 leave 6 random digits: allowed.
      await v.tokenize([{ type: 'pan', value: '4111111111111111', format: 'pan', preserve: 'bin6last4' }]);
      v.opened.vault.deps.policy().roles.billing[0].allowNarrowTokens = true;
      for (const item of cases) await v.tokenize([item]);
    });
  });
});
