import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('POST /v1/detokenize', () => {
  let v: TestVault;
  let pan: string;
  let ssn: string;
  let email: string;
  beforeEach(async () => {
    v = await createTestVault();
    [pan, ssn, email] = await v.tokenize([
      { type: 'pan', value: '4242 4242 4242 4242' },
      { type: 'ssn', value: '123-45-6789' },
      { type: 'email', value: 'Jane.Doe@Example.com' },
    ]);
  });
  afterEach(() => v.close());

  const detokenize = (who: 'billing' | 'gateway' | 'support' | 'security', body: object) =>
    v.http.post('/v1/detokenize').set(v.as(who)).send(body);

  it('gives the gateway the plain PAN for purpose charge', async () => {
    const res = await detokenize('gateway', { tokens: [pan], purpose: 'charge' });
    expect(res.status).to.equal(200);
    expect(res.body.items).to.deep.equal([{ token: pan, type: 'pan', value: '4242424242424242', reveal: 'plain' }]);
  });

  it('refuses the gateway without purpose, with another purpose, and for other types', async () => {
    const none = await detokenize('gateway', { tokens: [pan] });
    const refund = await detokenize('gateway', { tokens: [pan], purpose: 'refund' });
    const other = await detokenize('gateway', { tokens: [ssn], purpose: 'charge' });
    for (const res of [none, refund, other]) {
      expect(res.status).to.equal(200);
      expect(res.body.items[0]).to.deep.equal({ token: res.body.items[0].token, error: { code: 'forbidden' } });
    }
  });

  it('gives support masked values only, even when it asks for plain', async () => {
    const res = await detokenize('support', { tokens: [pan, ssn, email], reveal: 'plain' });
    expect(res.body.items).to.deep.equal([
      { token: pan, type: 'pan', value: '************4242', reveal: 'masked' },
      { token: ssn, type: 'ssn', value: '***-**-6789', reveal: 'masked' },
      { token: email, type: 'email', value: 'J***@example.com', reveal: 'masked' },
    ]);
  });

  it('lowers the reveal level when the caller asks for less', async () => {
    const masked = await detokenize('gateway', { tokens: [pan], purpose: 'charge', reveal: 'masked' });
    expect(masked.body.items[0]).to.include({ value: '************4242', reveal: 'masked' });
    const redacted = await detokenize('support', { tokens: [pan], reveal: 'redacted' });
    expect(redacted.body.items[0]).to.deep.equal({ token: pan, type: 'pan', value: null, reveal: 'redacted' });
  });

  it('generalizes when asked for `generalized`: brand, domain, year, calling code, country; redacted where no generalisation exists', async () => {
    const [dob, phone, address, iban] = await v.tokenize([
      { type: 'dob', value: '1984-07-02' },
      { type: 'phone', value: '+44 7911 123456' },
      { type: 'address', value: '1 Main St\nSpringfield, IL 62701\nUSA' },
      { type: 'iban', value: 'GB82 WEST 1234 5698 7654 32' },
    ]);
    const res = await detokenize('support', { tokens: [pan, ssn, email, dob, phone, address, iban], reveal: 'generalized' });
    expect(res.body.items).to.deep.equal([
      { token: pan, type: 'pan', value: 'visa', reveal: 'generalized' },
      { token: ssn, type: 'ssn', value: null, reveal: 'redacted' },
      { token: email, type: 'email', value: 'example.com', reveal: 'generalized' },
      { token: dob, type: 'dob', value: '1984', reveal: 'generalized' },
      { token: phone, type: 'phone', value: '+44', reveal: 'generalized' },
      { token: address, type: 'address', value: 'USA', reveal: 'generalized' },
      { token: iban, type: 'iban', value: 'GB', reveal: 'generalized' },
    ]);
  });

  it('a `generalized` grant gives generalised values, never masked or plain ones, whatever is asked', async () => {
    const file = join(v.dir, 'policy.json');
    const policy = JSON.parse(readFileSync(file, 'utf8'));
    policy.roles.support = [{ actions: ['detokenize'], types: ['*'], reveal: 'generalized' }];
    writeFileSync(file, JSON.stringify(policy));
    v.opened.reloadPolicy();
    for (const reveal of [undefined, 'plain', 'masked', 'generalized']) {
      const res = await detokenize('support', { tokens: [pan, email], ...(reveal ? { reveal } : {}) });
      expect(res.body.items, String(reveal)).to.deep.equal([
        { token: pan, type: 'pan', value: 'visa', reveal: 'generalized' },
        { token: email, type: 'email', value: 'example.com', reveal: 'generalized' },
      ]);
    }
    const redacted = await detokenize('support', { tokens: [pan], reveal: 'redacted' });
    expect(redacted.body.items[0]).to.deep.equal({ token: pan, type: 'pan', value: null, reveal: 'redacted' });
  });

  it('refuses billing and security the whole request with 403', async () => {
    for (const who of ['billing', 'security'] as const) {
      const res = await detokenize(who, { tokens: [pan], purpose: 'charge' });
      expect(res.status).to.equal(403);
      expect(res.body.error.code).to.equal('forbidden');
      expect(JSON.stringify(res.body)).not.to.contain('4242');
    }
  });

  it('reports unknown tokens as not_found per item, in request order', async () => {
    const res = await detokenize('support', { tokens: ['tok_doesnotexist', pan] });
    expect(res.body.items[0]).to.deep.equal({ token: 'tok_doesnotexist', error: { code: 'not_found' } });
    expect(res.body.items[1].reveal).to.equal('masked');
  });

  it("reports another tenant's token as not_found (no oracle) and audits the denial", async () => {
    const policy = v.opened.vault.deps.policy();
    policy.principals.billing.tenants = ['acme'];
    const acme = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ tenant: 'acme', items: [{ type: 'pan', value: '4111111111111111' }] });
    expect(acme.status).to.equal(200);
    const token = acme.body.items[0].token;
    const res = await detokenize('gateway', { tokens: [token], purpose: 'charge' });
    expect(res.body.items[0]).to.deep.equal({ token, error: { code: 'not_found' } });
    const last = await v.opened.store.auditRows(0, 1000);
    const row = last[last.length - 1];
    expect(row).to.include({ action: 'detokenize', outcome: 'deny', principal: 'gateway' });
    expect(row.reason).to.match(/^1 not_found/);
    // A token of a tenant the caller cannot see is not written down (it might be a value sent by mistake).
    expect(row.tokens).to.deep.equal([]);
  });

  it('decides every item of a mixed batch on its own, and audits the batch in one row that counts them', async () => {
    const policy = v.opened.vault.deps.policy();
    policy.principals.billing.tenants = ['default', 'acme'];
    policy.principals.gateway.tenants = ['default', 'acme'];
    const tokenize = async (body: object) => (await v.http.post('/v1/tokenize').set(v.as('billing')).send(body)).body.items[0].token;
    const acme = await tokenize({ tenant: 'acme', items: [{ type: 'pan', value: '4111111111111111' }] });
    const expiring = await tokenize({ items: [{ type: 'pan', value: '5555555555554444', ttlSeconds: 60 }] });
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 61_000;

    const res = await detokenize('gateway', { tokens: [pan, ssn, expiring, 'tok_doesnotexist', pan, acme], purpose: 'charge' });
    expect(res.body.items).to.deep.equal([
      { token: pan, type: 'pan', value: '4242424242424242', reveal: 'plain' },
      { token: ssn, error: { code: 'forbidden' } },
      { token: expiring, error: { code: 'expired' } },
      { token: 'tok_doesnotexist', error: { code: 'not_found' } },
      { token: pan, type: 'pan', value: '4242424242424242', reveal: 'plain' },
      { token: acme, type: 'pan', value: '4111111111111111', reveal: 'plain' },
    ]);
    const rows = await v.opened.store.auditRows(0, 1000);
    expect(rows[rows.length - 1]).to.deep.include({
      action: 'detokenize',
      outcome: 'partial',
      tenant: null,
      types: ['pan'],
      tokens: [pan, ssn, expiring, acme],
      purpose: 'charge',
      reason: '1 forbidden, 1 expired, 1 not_found (1 unknown tokens not recorded)',
    });

    const redacted = await detokenize('support', { tokens: [ssn, email], reveal: 'redacted' });
    expect(redacted.body.items).to.deep.equal([
      { token: ssn, type: 'ssn', value: null, reveal: 'redacted' },
      { token: email, type: 'email', value: null, reveal: 'redacted' },
    ]);
    const last = (await v.opened.store.auditRows(0, 1000)).at(-1);
    expect(last).to.deep.include({ outcome: 'allow', tenant: 'default', types: ['ssn', 'email'], reason: null });
  });

  it('reports an expired token as expired', async () => {
    const res = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'pan', value: '4111111111111111', ttlSeconds: 60 }] });
    const token = res.body.items[0].token;
    const live = await detokenize('gateway', { tokens: [token], purpose: 'charge' });
    expect(live.body.items[0].value).to.equal('4111111111111111');
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 61_000;
    const later = await detokenize('gateway', { tokens: [token], purpose: 'charge' });
    expect(later.body.items[0]).to.deep.equal({ token, error: { code: 'expired' } });
  });

  it('a deterministic token that expired gives way to a new one', async () => {
    const item = { type: 'pan', value: '4111111111111111', ttlSeconds: 60, deterministic: true };
    const first = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [item] });
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 61_000;
    const second = await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [item] });
    expect(second.body.items[0].token).not.to.equal(first.body.items[0].token);
    const res = await detokenize('gateway', { tokens: [second.body.items[0].token], purpose: 'charge' });
    expect(res.body.items[0].value).to.equal('4111111111111111');
  });
});

describe('GET and DELETE /v1/tokens/:token', () => {
  let v: TestVault;
  let token: string;
  beforeEach(async () => {
    v = await createTestVault();
    [token] = await v.tokenize([
      { type: 'ssn', value: '123-45-6789', subject: 'cust_42', metadata: { source: 'signup', plan: 3 }, ttlSeconds: 3600 },
    ]);
  });
  afterEach(() => v.close());

  it('returns metadata and never the value', async () => {
    const res = await v.http.get(`/v1/tokens/${token}`).set(v.as('billing'));
    expect(res.status).to.equal(200);
    expect(res.body).to.include({ token, type: 'ssn', tenant: 'default', format: 'random', keyVersion: 1, subject: 'cust_42' });
    // The subject id is personal data: only callers that could have supplied it (or export it) see it.
    const support = await v.http.get(`/v1/tokens/${token}`).set(v.as('support'));
    expect(support.body.subject).to.equal('[redacted]');
    const security = await v.http.get(`/v1/tokens/${token}`).set(v.as('security'));
    expect(security.body.subject, 'security serves subject requests (subject:export)').to.equal('cust_42');
    expect(res.body.metadata).to.deep.equal({ source: 'signup', plan: 3 });
    expect(Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt)).to.equal(3600_000);
    expect(JSON.stringify(res.body)).not.to.match(/6789/);
  });

  it('deletes a token (204), after which it is gone everywhere', async () => {
    expect((await v.http.delete(`/v1/tokens/${token}`).set(v.as('billing'))).status).to.equal(204);
    expect((await v.http.get(`/v1/tokens/${token}`).set(v.as('security'))).status).to.equal(404);
    expect((await v.http.delete(`/v1/tokens/${token}`).set(v.as('billing'))).status).to.equal(404);
    const res = await v.http
      .post('/v1/detokenize')
      .set(v.as('support'))
      .send({ tokens: [token] });
    expect(res.body.items[0].error.code).to.equal('not_found');
  });

  it('refuses delete to roles without the grant, and audits it', async () => {
    const res = await v.http.delete(`/v1/tokens/${token}`).set(v.as('support'));
    expect(res.status).to.equal(403);
    const rows = await v.opened.store.auditRows(0, 1000);
    expect(rows[rows.length - 1]).to.include({ action: 'delete', outcome: 'deny', principal: 'support' });
    expect((await v.http.get(`/v1/tokens/${token}`).set(v.as('security'))).status).to.equal(200);
  });

  it('answers 404 for a malformed or unknown token', async () => {
    expect((await v.http.get('/v1/tokens/tok_unknown').set(v.as('security'))).body.error.code).to.equal('not_found');
    expect((await v.http.get('/v1/tokens/%00bad').set(v.as('security'))).status).to.equal(404);
  });
});
