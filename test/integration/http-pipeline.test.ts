import { expect } from 'chai';
import { tracingChannel } from 'node:diagnostics_channel';
import type { Test } from 'supertest';
import { hashApiKey } from '../../src/policy/authenticator';
import { ACTIONS } from '../../src/policy/policy';
import { API_ROUTES, ApiRoute, isPublic, PUBLIC_ROUTES, Route, ROUTES } from '../../src/http/routes';
import { createTestVault, TestVault } from '../helpers/test-vault';

/**
 * Every route is declared once (routes.ts) and gets its whole pipeline from that declaration: the
 * same router serves all of them, so what holds for one route holds for the hottest ones too.
 */
describe('one HTTP pipeline for every route', () => {
  let v: TestVault;
  let token: string;
  const keys = { admin: 'pvk_pipeline-admin', intruder: 'pvk_pipeline-intruder', throttled: 'pvk_pipeline-throttled' };
  const as = (who: keyof typeof keys) => ({ Authorization: `Bearer ${keys[who]}` });

  before(async () => {
    v = await createTestVault({
      rateLimits: { default: { ratePerSecond: 100_000, burst: 100_000 }, roles: { slow: { ratePerSecond: 0.001, burst: 0 } } },
    });
    [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
    // Three more principals: one granted every action, one granted none, one granted every action but throttled.
    const policy = v.opened.vault.deps.policy();
    policy.roles.all = [{ actions: [...ACTIONS], types: ['*'], reveal: 'plain' }];
    policy.roles.none = [];
    policy.roles.slow = [{ actions: [...ACTIONS], types: ['*'], reveal: 'plain' }];
    const principal = (roles: string[], key: string) => ({ roles, tenants: ['*'], apiKeys: [{ sha256: hashApiKey(key) }] });
    policy.principals.admin = principal(['all'], keys.admin);
    policy.principals.intruder = principal(['none'], keys.intruder);
    policy.principals.throttled = principal(['slow'], keys.throttled);
  });
  after(() => v.close());

  const concrete = (route: Route) =>
    route.path.replace(':token', token).replace(':id', '00000000-0000-4000-8000-000000000000').replace(':version', '1');
  const call = (route: Route, path = concrete(route)): Test =>
    (v.http as unknown as Record<string, (p: string) => Test>)[route.method](path);
  const name = (route: Route) => `${route.method.toUpperCase()} ${route.path}`;

  it('routes without a policy action are explicitly marked public, and only the probes skip the concurrency limit', () => {
    for (const route of ROUTES) {
      if (isPublic(route)) expect(route.public, name(route)).to.equal(true);
      else expect(ACTIONS, name(route)).to.include((route as ApiRoute).action);
    }
    expect(PUBLIC_ROUTES.filter((r) => r.unlimited).map((r) => r.path)).to.deep.equal(['/healthz', '/readyz', '/metrics']);
  });

  it("express's router instrumentation sees every route, tokenize and detokenize included", async () => {
    const seen = new Set<string>();
    const channel = tracingChannel('express.router.request');
    const onStart = (message: unknown) => {
      const { route } = message as { route?: string };
      if (route) seen.add(route);
    };
    channel.start.subscribe(onStart);
    try {
      for (const route of API_ROUTES) await call(route).set(as('admin'));
    } finally {
      channel.start.unsubscribe(onStart);
    }
    expect([...seen]).to.include.members(API_ROUTES.map((r) => r.path));
  });

  it('every route answers with a request id, helmet headers and no-store caching', async () => {
    for (const route of ROUTES) {
      const res = await call(route).set(as('admin'));
      expect(res.headers['x-request-id'], name(route)).to.match(/^[0-9a-f-]{36}$/);
      expect(res.headers['content-security-policy'], name(route)).to.be.a('string');
      expect(res.headers['x-content-type-options'], name(route)).to.equal('nosniff');
      expect(res.headers['cache-control'], name(route)).to.equal('no-store');
    }
  });

  for (const route of API_ROUTES) {
    it(`${name(route)}: a caller no grant gives \`${route.action}\` is refused before its body is read, audited once`, async () => {
      const before = (await v.opened.store.auditRows(0, 100_000)).length;
      const res = await call(route).set(as('intruder')).set('Content-Type', 'application/json').send('{"not json');
      expect(res.status, JSON.stringify(res.body)).to.equal(403);
      expect(res.body.error.code).to.equal('forbidden');
      const added = (await v.opened.store.auditRows(0, 100_000)).slice(before);
      expect(added.map((r) => ({ principal: r.principal, action: r.action, outcome: r.outcome }))).to.deep.equal([
        { principal: 'intruder', action: route.auditAction ?? route.action, outcome: 'deny' },
      ]);
    });
  }

  it('every API route is rate limited per principal, and reads at most 1 MiB of JSON', async () => {
    for (const route of API_ROUTES) {
      const limited = await call(route).set(as('throttled'));
      expect([limited.status, limited.body.error?.code], name(route)).to.deep.equal([429, 'rate_limited']);
      expect(limited.headers['retry-after'], name(route)).to.match(/^\d+$/);
      const big = JSON.stringify({ filler: 'x'.repeat(1024 * 1024) });
      const tooLarge = await call(route).set(as('admin')).set('Content-Type', 'application/json').send(big);
      expect([tooLarge.status, tooLarge.body.error?.code], name(route)).to.deep.equal([413, 'payload_too_large']);
    }
  });

  it('every API route maps errors to a JSON error body, and a failing handler to internal_error without its message', async () => {
    const vault = v.opened.vault as unknown as Record<string, unknown>;
    const names = Object.getOwnPropertyNames(Object.getPrototypeOf(vault)).filter((n) => n !== 'constructor');
    const saved = new Map(names.map((n) => [n, vault[n]]));
    const failing = async () => {
      throw new Error('card 4111111111111111 in a message');
    };
    // Every use case fails the same way; authentication and the coarse check still work.
    for (const n of names)
      if (!['authenticate', 'authenticateCertificate', 'hasGrant', 'refuseUngranted', 'recordAuthFailure'].includes(n)) vault[n] = failing;
    try {
      for (const route of API_ROUTES) {
        const res = await call(route)
          .set(as('admin'))
          .send(route.body ? {} : undefined);
        if (res.status === 400) continue; // refused by its schema before the handler: also mapped
        expect([res.status, res.body.error?.code], name(route)).to.deep.equal([500, 'internal_error']);
        expect(res.text, name(route)).not.to.include('4111');
      }
    } finally {
      for (const [n, fn] of saved) vault[n] = fn;
    }
  });

  it('matches paths as the README says: any case, an optional trailing slash, 404 and 405 as JSON errors', async () => {
    const tokenize = (path: string) =>
      v.http
        .post(path)
        .set(v.as('billing'))
        .send({ items: [{ type: 'email', value: 'c@example.com' }] });
    expect((await tokenize('/V1/Tokenize/')).status).to.equal(200);
    expect((await tokenize('/v1/tokenize?debug=1')).status).to.equal(200);
    const unknownApi = await v.http.get('/v1/nothing');
    expect([unknownApi.status, unknownApi.body.error.code], 'an unknown /v1 path needs a key first').to.deep.equal([401, 'unauthorized']);
    const notFound = await v.http.get('/v1/nothing').set(v.as('billing'));
    expect([notFound.status, notFound.body.error.code]).to.deep.equal([404, 'not_found']);
    const elsewhere = await v.http.get('/nothing');
    expect([elsewhere.status, elsewhere.body.error.code]).to.deep.equal([404, 'not_found']);
    const wrongMethod = await v.http.get('/v1/tokenize').set(v.as('billing'));
    expect([wrongMethod.status, wrongMethod.body.error.code]).to.deep.equal([405, 'method_not_allowed']);
    const publicWrongMethod = await v.http.post('/healthz');
    expect([publicWrongMethod.status, publicWrongMethod.body.error.code]).to.deep.equal([404, 'not_found']);
    expect(wrongMethod.headers['x-request-id']).to.be.a('string');
    expect(publicWrongMethod.headers['content-security-policy']).to.be.a('string');
  });
});

describe('response schemas are allow-lists: nothing undeclared leaves the vault', () => {
  let v: TestVault;
  let token: string;
  before(async () => {
    v = await createTestVault();
    [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111', subject: 'customer-42' }]);
  });
  after(() => v.close());

  /** Makes one use case answer more than its schema declares, for the duration of `run`. */
  async function leaking<K extends 'readMetadata' | 'detokenize' | 'listAudit' | 'tokenize'>(
    method: K,
    extra: (result: Awaited<ReturnType<TestVault['opened']['vault'][K]>>) => unknown,
    run: () => Promise<void>,
  ): Promise<void> {
    const vault = v.opened.vault as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const original = vault[method];
    vault[method] = async (...args) => extra((await original.apply(v.opened.vault, args)) as never);
    try {
      await run();
    } finally {
      vault[method] = original;
    }
  }

  it('token metadata: an extra ciphertext and subjectHash are dropped, the declared fields kept', async () => {
    await leaking(
      'readMetadata',
      (meta) => ({ ...meta, ciphertext: 'c2VjcmV0', subjectHash: 'ab'.repeat(32) }),
      async () => {
        const res = await v.http.get(`/v1/tokens/${token}`).set(v.as('billing'));
        expect(res.status).to.equal(200);
        expect(res.body).to.include({ token, type: 'pan', tenant: 'default' });
        expect(res.body).not.to.have.any.keys('ciphertext', 'subjectHash');
        expect(res.text).not.to.include('c2VjcmV0');
      },
    );
  });

  it('detokenize: an extra field inside an item (value or error item) is dropped', async () => {
    await leaking(
      'detokenize',
      (result) => ({
        items: [
          ...result.items.map((i) => ({ ...i, ciphertext: 'c2VjcmV0' })),
          { token: 'x', error: { code: 'not_found', value: '4111111111111111' } },
        ],
      }),
      async () => {
        const res = await v.http
          .post('/v1/detokenize')
          .set(v.as('gateway'))
          .send({ tokens: [token], purpose: 'charge' });
        expect(res.status).to.equal(200);
        expect(res.body.items).to.deep.equal([
          { token, type: 'pan', value: '4111111111111111', reveal: 'plain' },
          { token: 'x', error: { code: 'not_found' } },
        ]);
      },
    );
  });

  it('audit rows: an extra prevHash is dropped; tokenize: an extra value is dropped', async () => {
    await leaking(
      'listAudit',
      (page) => ({ ...page, items: page.items.map((r) => ({ ...r, prevHash: 'ff'.repeat(32) })) }),
      async () => {
        const res = await v.http.get('/v1/audit?limit=5').set(v.as('security'));
        expect(res.status).to.equal(200);
        expect(res.body.items).to.have.length.greaterThan(0);
        for (const row of res.body.items) expect(row).not.to.have.property('prevHash');
      },
    );
    await leaking(
      'tokenize',
      (result) => ({ items: result.items.map((i) => ({ ...i, value: '5555555555554444' })) }),
      async () => {
        const res = await v.http
          .post('/v1/tokenize')
          .set(v.as('billing'))
          .send({ items: [{ type: 'pan', value: '5555555555554444' }] });
        expect(res.status).to.equal(200);
        expect(res.text).not.to.include('5555555555554444');
      },
    );
  });

  it('a value of an undeclared type is refused as internal_error, not sent', async () => {
    await leaking(
      'readMetadata',
      (meta) => ({ ...meta, subject: { raw: 'customer-42' } }),
      async () => {
        const res = await v.http.get(`/v1/tokens/${token}`).set(v.as('billing'));
        expect([res.status, res.body.error.code]).to.deep.equal([500, 'internal_error']);
        expect(res.text).not.to.include('customer-42');
      },
    );
  });
});
