import { expect } from 'chai';
import { VaultMetrics } from '../../src/http/metrics';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import supertest from 'supertest';
import { createTestVault, TestVault } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

describe('abuse: rate limits, authentication brake, sensitive authentication data', () => {
  let v: TestVault;
  afterEach(() => v.close());

  const tokenize = (who: 'billing' | 'support', http = v.http) =>
    http
      .post('/v1/tokenize')
      .set(v.as(who))
      .send({ items: [{ type: 'text', value: 'x' }] });

  it('a burst over a principal’s limit gets 429 with Retry-After while another principal is unaffected', async () => {
    v = await createTestVault({ rateLimits: { default: { ratePerSecond: 1, burst: 5 }, roles: {} } });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await tokenize('billing')).status);
    expect(statuses.slice(0, 5)).to.deep.equal([200, 200, 200, 200, 200]);
    const limited = await tokenize('billing');
    expect(limited.status).to.equal(429);
    expect(limited.body.error.code).to.equal('rate_limited');
    expect(Number(limited.headers['retry-after'])).to.be.within(1, 2);
    const other = await v.http.get('/v1/audit/verify').set(v.as('security'));
    expect(other.status).to.equal(200);
  });

  it('a role can be given a more generous limit than the default', async () => {
    v = await createTestVault({
      rateLimits: { default: { ratePerSecond: 1, burst: 2 }, roles: { billing: { ratePerSecond: 100, burst: 50 } } },
    });
    for (let i = 0; i < 20; i++) expect((await tokenize('billing')).status).to.equal(200);
    await v.http.get('/v1/audit').set(v.as('security'));
    await v.http.get('/v1/audit').set(v.as('security'));
    expect((await v.http.get('/v1/audit').set(v.as('security'))).status).to.equal(429);
  });

  it('repeated bad keys from one address get 429 after the limit, a valid key from it is still served; failures are audited', async () => {
    v = await createTestVault({ authFailuresPerMinute: 5 });
    const before = (await v.opened.store.auditRows(0, 10_000)).length;
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push((await v.http.post('/v1/tokenize').set('Authorization', `Bearer pvk_guess${i}`).send({})).status);
    }
    expect(statuses).to.deep.equal([401, 401, 401, 401, 401, 429, 429, 429]);
    const throttled = await v.http.post('/v1/tokenize').set('Authorization', 'Bearer pvk_guess9').send({});
    expect(throttled.body.error.code).to.equal('too_many_auth_failures');
    expect(Number(throttled.headers['retry-after'])).to.be.greaterThan(0);
    const valid = await v.http.get('/v1/audit').set(v.as('security'));
    expect(valid.status, 'a valid key is never refused for the failures of others at its address').to.equal(200);
    // The first failures of an address are audited one by one, the rest summed up when the window closes.
    await v.opened.vault.authFailures.flush();
    const rows = (await v.opened.store.auditRows(0, 10_000)).slice(before).filter((r) => r.action === 'authenticate');
    expect(rows.map((r) => [r.principal, r.action, r.outcome])).to.deep.equal(Array(6).fill(['anonymous', 'authenticate', 'deny']));
    expect(rows[5].reason).to.match(/^4 further failed authentications from 1 addresses/);
    expect(rows[0].reason).to.match(/^unknown API key from .*127\.0\.0\.1/);
    expect(JSON.stringify(rows)).not.to.contain('pvk_guess');
  });

  const sad: Array<[string, object]> = [
    ['a cvv data type', { items: [{ type: 'cvv', value: '123' }] }],
    ['a CVC2 field on an item', { items: [{ type: 'pan', value: '4111111111111111', CVC2: '123' }] }],
    ['a pin in metadata', { items: [{ type: 'pan', value: '4111111111111111', metadata: { pin: '1234' } }] }],
    ['track 2 data in free text', { items: [{ type: 'text', value: ';4111111111111111=25121011000012345678?' }] }],
    ['track 1 data in an address', { items: [{ type: 'address', value: '%B4111111111111111^DOE/JANE^2512101100000000?' }] }],
    ['a top-level security_code', { security_code: '999', items: [{ type: 'text', value: 'x' }] }],
  ];
  for (const [what, body] of sad) {
    it(`refuses ${what} as sensitive_authentication_data, without echoing it`, async () => {
      v = await createTestVault();
      const res = await v.http.post('/v1/tokenize').set(v.as('billing')).send(body);
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('sensitive_authentication_data');
      expect(res.body.error.message).not.to.match(/4111111111111111|1234|999|123\b/);
      expect((v.opened.store.db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n).to.equal(0);
    });
  }

  it('more requests in flight than the limit get 503 overloaded at once', async () => {
    v = await createTestVault({ maxConcurrentRequests: 2 });
    // Hold two requests open by stalling their bodies, then a third is refused.
    const app = v.http;
    const slow = () => {
      const req = app.post('/v1/tokenize').set(v.as('billing')).set('Content-Type', 'application/json');
      req.write('{"items":[{"type":"text",');
      return req;
    };
    const a = slow();
    const b = slow();
    // Once both stalled requests hold their slots, a third one is refused.
    const third = await waitFor(
      async () => {
        const res = await v.http.get('/v1/audit').set(v.as('security'));
        return res.status === 503 && res;
      },
      { what: 'a third request to be refused while two are held open' },
    );
    expect(third.body.error.code).to.equal('overloaded');
    expect((await v.http.get('/healthz')).status, 'probes are not subject to the limit').to.equal(200);
    a.write('"value":"x"}]}');
    b.write('"value":"y"}]}');
    const [ra, rb] = await Promise.all([a, b]);
    expect([ra.status, rb.status]).to.deep.equal([200, 200]);
    expect((await v.http.get('/healthz')).status).to.equal(200);
  });

  it('serves Prometheus metrics with route patterns and counts, never tokens or values', async () => {
    v = await createTestVault();
    const metrics = new VaultMetrics(() => v.opened.keys.providerCalls);
    const http = supertest(createApp({ vault: v.opened.vault, logger: createLogger('silent'), metrics }));
    const tok = await http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'pan', value: '4111111111111111' }] });
    await http.get(`/v1/tokens/${tok.body.items[0].token}`).set(v.as('security'));
    await http.get('/v1/audit').set('Authorization', 'Bearer nope');
    const res = await http.get('/metrics');
    expect(res.status).to.equal(200);
    expect(res.text).to.match(/pii_vault_http_requests_total\{route="\/v1\/tokenize",method="POST",status="200"\} 1/);
    expect(res.text).to.match(/pii_vault_http_requests_total\{route="\/v1\/tokens\/:token",method="GET",status="200"\} 1/);
    expect(res.text).to.match(/pii_vault_auth_failures_total 1/);
    expect(res.text).to.match(/pii_vault_key_provider_calls_total \d+/);
    expect(res.text).not.to.contain(tok.body.items[0].token);
    expect(res.text).not.to.contain('4111111111111111');
  });
});
