import { expect } from 'chai';
import supertest from 'supertest';
import { createApp, HttpLimits } from '../../src/http/app';
import { VaultMetrics } from '../../src/http/metrics';
import { createLogger } from '../../src/logger';
import { API_ROUTES, PUBLIC_ROUTES } from '../../src/http/routes';
import { StarterKeys } from '../helpers/processes';
import { createTestVault, TestVault } from '../helpers/test-vault';

type Principal = keyof StarterKeys;
interface Call {
  as?: Principal | 'nobody';
  path?: string;
  body?: string | object;
  contentType?: string;
}
interface Observed {
  method: string;
  path: string;
  status: number;
  code?: string;
}

/** Who may call each operation (for the calls that should pass the gate) and who may not (403). */
const ACCESS: Record<string, { allowed: Principal; denied: Principal }> = {
  tokenize: { allowed: 'billing', denied: 'gateway' },
  detokenize: { allowed: 'gateway', denied: 'billing' },
  getTokenMetadata: { allowed: 'billing', denied: 'gateway' },
  deleteToken: { allowed: 'billing', denied: 'support' },
  listAudit: { allowed: 'security', denied: 'billing' },
  verifyAudit: { allowed: 'security', denied: 'billing' },
  listKeys: { allowed: 'security', denied: 'billing' },
  rotateKeys: { allowed: 'security', denied: 'billing' },
  rewrapKeys: { allowed: 'security', denied: 'billing' },
  reencryptRecords: { allowed: 'security', denied: 'billing' },
  getJob: { allowed: 'security', denied: 'billing' },
  retireKey: { allowed: 'security', denied: 'billing' },
  destroyKey: { allowed: 'security', denied: 'billing' },
  exportSubject: { allowed: 'security', denied: 'gateway' },
  subjectAccessLog: { allowed: 'security', denied: 'gateway' },
  eraseSubject: { allowed: 'security', denied: 'gateway' },
  changeSubjectConsent: { allowed: 'billing', denied: 'gateway' },
  policyReport: { allowed: 'security', denied: 'support' },
};

/** Calls that must fail in the handler of one operation (bad values, unknown ids, key states). */
const HANDLER_ERRORS: Record<string, Call[]> = {
  tokenize: [
    { body: { items: [{ type: 'pan', value: '4111111111111112' }] } },
    { body: { items: [{ type: 'email', value: 'a@b.example', format: 'pan' }] } },
    { body: { items: Array.from({ length: 1001 }, () => ({ type: 'text', value: 'x' })) } },
  ],
  detokenize: [{ body: { tokens: Array.from({ length: 1001 }, () => 'tok_x') } }],
  getTokenMetadata: [{ path: '/v1/tokens/tok_doesnotexist' }],
  deleteToken: [{ path: '/v1/tokens/tok_doesnotexist' }],
  listAudit: [{ path: '/v1/audit?limit=0' }],
  policyReport: [{ path: '/v1/policy/report?format=html' }],
  getJob: [{ path: '/v1/jobs/00000000-0000-4000-8000-000000000000' }],
  retireKey: [{ body: {} }, { path: '/v1/keys/99/retire', body: {} }],
  destroyKey: [{ body: {} }, { body: { confirm: 'destroy default/data/v1' } }, { path: '/v1/keys/99/destroy', body: {} }],
};

describe('OpenAPI: every status a route answers is declared for it', function () {
  this.timeout(120_000);
  const observed: Observed[] = [];
  let doc: { paths: Record<string, Record<string, { responses: Record<string, { 'x-error-codes'?: string[] }> }>> };

  /** The test vault's app has no /metrics; the same vault behind an app that serves them, with the same limits. */
  const withMetrics = (v: TestVault, limits: Partial<HttpLimits>) =>
    supertest(
      createApp({
        vault: v.opened.vault,
        logger: createLogger('silent'),
        metrics: new VaultMetrics(() => 0),
        limits: {
          rateLimits: { default: { ratePerSecond: 100_000, burst: 100_000 }, roles: {} },
          authFailuresPerMinute: 100_000,
          maxConcurrentRequests: 10_000,
          ...limits,
        },
      }),
    );

  async function exercise(v: TestVault, limits: Partial<HttpLimits> = {}, onlyPublic = false): Promise<void> {
    const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]).catch(() => ['tok_unavailable']);
    const job = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
    const jobId = job.body?.job?.id ?? '00000000-0000-4000-8000-000000000001';
    const concrete = (path: string) => path.replace(':token', token).replace(':id', jobId).replace(':version', '1');
    const publicHttp = withMetrics(v, limits);
    const send = async (method: string, template: string, call: Call, http = v.http) => {
      const path = call.path ?? concrete(template);
      let req = (http as unknown as Record<string, (p: string) => any>)[method](path);
      if (call.as && call.as !== 'nobody') req = req.set(v.as(call.as));
      if (call.body !== undefined) {
        req = req.set('Content-Type', call.contentType ?? 'application/json');
        req = req.send(typeof call.body === 'string' ? call.body : JSON.stringify(call.body));
      }
      const res = await req;
      observed.push({ method, path: template, status: res.status, code: res.body?.error?.code });
    };
    for (const route of PUBLIC_ROUTES) await send('get', route.path, {}, publicHttp);
    await send('get', '/metrics', {}, publicHttp);
    if (onlyPublic) return;
    for (const route of API_ROUTES) {
      const { allowed, denied } = ACCESS[route.operationId];
      const body = route.body ? {} : undefined;
      const calls: Call[] = [
        { as: allowed, body },
        { as: 'nobody', body },
        { as: denied, body },
        { as: allowed, body: '{"items": [' },
        { as: allowed, body: {}, contentType: 'application/json; charset=latin1' },
        { as: allowed, body: 'x'.repeat(1024 * 1024 + 1) },
        { as: allowed, body: { metadata: { cvv: '123' } } },
        ...(route.body
          ? [
              { as: allowed, body: { unknownField: 1 } },
              { as: allowed, body: 'not json', contentType: 'text/plain' },
            ]
          : []),
        ...(HANDLER_ERRORS[route.operationId] ?? []).map((c) => ({ as: allowed, body, ...c })),
      ];
      for (const call of calls) await send(route.method, route.path, call);
    }
  }

  after(() => {
    // Which statuses were seen at all, so a scenario that stopped producing its error shows up in review.
    const seen = [...new Set(observed.map((o) => o.status))].sort();
    expect(seen).to.include.members([200, 204, 400, 401, 403, 404, 409, 413, 415, 429, 503]);
  });

  it('a healthy vault: successes and client errors', async () => {
    const v = await createTestVault();
    try {
      doc = (await withMetrics(v, {}).get('/openapi.json')).body;
      await exercise(v);
    } finally {
      await v.close();
    }
  });

  it('rate limits and the authentication brake (429)', async () => {
    const limits = { rateLimits: { default: { ratePerSecond: 0.001, burst: 3 }, roles: {} }, authFailuresPerMinute: 1 };
    const v = await createTestVault(limits);
    try {
      await exercise(v, limits);
    } finally {
      await v.close();
    }
  });

  it('an overloaded vault (503 overloaded) and one whose database is gone (503)', async () => {
    const overloaded = await createTestVault({ maxConcurrentRequests: 0 });
    try {
      await exercise(overloaded, { maxConcurrentRequests: 0 }, true);
      for (const route of API_ROUTES) {
        const res = await (overloaded.http as unknown as Record<string, (p: string) => any>)[route.method](route.path);
        observed.push({ method: route.method, path: route.path, status: res.status, code: res.body?.error?.code });
      }
    } finally {
      await overloaded.close();
    }
    const broken = await createTestVault();
    try {
      await broken.opened.store.close();
      await exercise(broken);
    } finally {
      await broken.close();
    }
  });

  it('declares each observed status (and error code) for its route', () => {
    expect(observed.length).to.be.greaterThan(100);
    const undeclared = new Set<string>();
    for (const o of observed) {
      const operation = doc.paths[o.path.replace(/:(\w+)/g, '{$1}')]?.[o.method];
      const declared = operation?.responses[String(o.status)];
      if (!declared) undeclared.add(`${o.method.toUpperCase()} ${o.path} → ${o.status} ${o.code ?? ''}`);
      else if (o.code && !declared['x-error-codes']?.includes(o.code))
        undeclared.add(`${o.method.toUpperCase()} ${o.path} → ${o.status} ${o.code} (code not listed)`);
    }
    expect([...undeclared]).to.deep.equal([]);
  });
});
