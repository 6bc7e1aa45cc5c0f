import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as contract from '../../src/contract/schemas';
import { Static } from '@sinclair/typebox';
import { OPERATIONS, TOKENIZE_ITEM_FIELDS, VaultApiError, VaultBatchError, VaultClient, VaultConnectionError } from '../../src/client';
import type * as client from '../../src/client';
import { initVault, serve, ServerProcess, StarterKeys } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';

// Compile-time: the client's hand-written types are exactly the contract's (a drift fails the build).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameTypes: [
  Same<client.TokenizeRequest, contract.TokenizeRequest>,
  Same<{ items: client.TokenizedItem[] }, contract.TokenizeResponse>,
  Same<client.DetokenizeRequest, contract.DetokenizeRequest>,
  Same<client.DetokenizeWireResponse, contract.DetokenizeResponse>,
  Same<client.TokenMetadata, contract.TokenMetadata>,
  Same<client.AuditPage, contract.AuditListResponse>,
  Same<client.AuditVerifyResult, contract.AuditVerifyResponse>,
  Same<{ keys: client.KeyView[] }, Static<typeof contract.KeyListResponseSchema>>,
  Same<client.KeyScope, contract.KeyScope>,
  Same<client.RotateResult, Static<typeof contract.RotateResponseSchema>>,
  Same<{ target?: client.RewrapTarget }, contract.RewrapRequest>,
  Same<client.RewrapResult, Static<typeof contract.RewrapResponseSchema>>,
  Same<client.Job, Static<typeof contract.JobSchema>>,
  Same<{ tenant?: string; confirm?: string }, contract.DestroyRequest>,
  Same<client.SubjectRequest, contract.SubjectRequest>,
  Same<client.AccessLogRequest, contract.AccessLogRequest>,
  Same<client.ConsentRequest, contract.ConsentRequest>,
  Same<client.SubjectExport, Static<typeof contract.SubjectExportSchema>>,
  Same<client.SubjectAccessLog, Static<typeof contract.AccessLogResponseSchema>>,
  Same<client.EraseResult, contract.EraseResponse>,
  Same<client.ConsentResult, contract.ConsentResponse>,
  Same<client.PolicyReport, contract.PolicyReport>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true];

const REPO = join(__dirname, '..', '..', '..');
const PAN = '4111111111111111';

describe('typed client (pii-vault/client) against a real vault', function () {
  this.timeout(60_000);
  let root: string;
  let keys: StarterKeys;
  let server: ServerProcess;
  const clients: VaultClient[] = [];
  const as = (principal: keyof StarterKeys, options: Partial<client.VaultClientOptions> = {}) => {
    const made = new VaultClient({ baseUrl: server.url, apiKey: keys[principal], ...options });
    clients.push(made);
    return made;
  };

  before(async () => {
    root = tempDir('pii-vault-client-');
    keys = initVault(join(root, 'vault'), { logLevel: 'warn' });
    server = await serve(join(root, 'vault'));
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.stop('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('its types are the contract’s (checked when the tests compile)', () => {
    expect(sameTypes.every(Boolean)).to.equal(true);
  });

  it('is exported as pii-vault/client for require and import, with type declarations', () => {
    const script = (code: string, type: 'commonjs' | 'module') =>
      spawnSync(process.execPath, ['--input-type', type, '-e', code], { cwd: REPO, encoding: 'utf8' });
    const cjs = script("console.log(Object.keys(require('pii-vault/client')).sort().join())", 'commonjs');
    const esm = script(
      "import * as m from 'pii-vault/client'; console.log(Object.keys(m).filter((k) => k !== 'default').sort().join())",
      'module',
    );
    expect(cjs.status, cjs.stderr).to.equal(0);
    expect(esm.status, esm.stderr).to.equal(0);
    expect(esm.stdout).to.equal(cjs.stdout);
    expect(cjs.stdout).to.include('VaultClient');
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
    expect(existsSync(join(REPO, pkg.exports['./client'].types))).to.equal(true);
  });

  it('matches the served OpenAPI document: every client operation exists there, every /v1 operation has a client method', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as any;
    const served = new Map<string, { method: string; path: string; op: any }>();
    for (const [path, methods] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(methods)) if (op.operationId) served.set(op.operationId, { method, path, op });
    }
    for (const [id, operation] of Object.entries(OPERATIONS)) {
      const found = served.get(id);
      expect(found, `${id} in the document`).to.not.equal(undefined);
      expect(`${found!.method.toUpperCase()} ${found!.path}`, id).to.equal(`${operation.method} ${operation.path}`);
      const bodyFields = Object.keys(found!.op.requestBody?.content['application/json'].schema.properties ?? {});
      expect(bodyFields, `${id} body`).to.include.members([...('body' in operation ? operation.body : [])]);
      const queryFields = (found!.op.parameters ?? []).filter((p: any) => p.in === 'query').map((p: any) => p.name);
      expect(queryFields, `${id} query`).to.include.members([...('query' in operation ? operation.query : [])]);
    }
    const itemFields = Object.keys(
      served.get('tokenize')!.op.requestBody.content['application/json'].schema.properties.items.items.properties,
    );
    expect(itemFields).to.have.members([...TOKENIZE_ITEM_FIELDS]);
    const v1 = [...served].filter(([, s]) => s.path.startsWith('/v1/')).map(([id]) => id);
    expect(v1).to.have.members(Object.keys(OPERATIONS));
  });

  it('tokenize, detokenize (per-item union), metadata and delete', async () => {
    const billing = as('billing');
    const [pan, email] = await billing.tokenize({
      items: [
        { type: 'pan', value: PAN },
        { type: 'email', value: 'jane@example.com', deterministic: true, subject: 'cust_42' },
      ],
    });
    expect(pan.type).to.equal('pan');
    expect(email.token).to.match(/^tok_[0-9A-Za-z]{30}$/);
    const items = await as('gateway').detokenize({ tokens: [pan.token, 'tok_doesnotexist'], purpose: 'charge' });
    expect(items).to.deep.equal([
      { ok: true, token: pan.token, type: 'pan', value: PAN, reveal: 'plain' },
      { ok: false, token: 'tok_doesnotexist', error: { code: 'not_found' } },
    ]);
    const first = items[0];
    if (first.ok) expect(first.value).to.equal(PAN); // the union narrows on `ok`
    const masked = await as('support').detokenize({ tokens: [pan.token] });
    expect(masked[0]).to.include({ ok: true, reveal: 'masked', value: '************1111' });
    const metadata = await as('security').getTokenMetadata(email.token);
    expect(metadata).to.include({ token: email.token, type: 'email', tenant: 'default', format: 'random', keyVersion: 1 });
    await billing.deleteToken(pan.token, { tenant: 'default' });
    const gone = await billing.getTokenMetadata(pan.token).catch((e) => e);
    expect(gone).to.be.instanceOf(VaultApiError);
    expect(gone).to.include({ code: 'not_found', status: 404, attempts: 1 });
  });

  it('data subjects: consent, export, access log, erase', async () => {
    const billing = as('billing');
    const security = as('security');
    const [made] = await billing.tokenize({ purposes: ['charge'], items: [{ type: 'pan', value: PAN, subject: 'cust-client-1' }] });
    expect(await security.changeSubjectConsent({ subject: 'cust-client-1', withdraw: ['charge'] })).to.deep.equal({
      tenant: 'default',
      consentedPurposes: [],
    });
    const [refused] = await as('gateway').detokenize({ tokens: [made.token], purpose: 'charge' });
    expect(refused).to.deep.equal({ ok: false, token: made.token, error: { code: 'forbidden', reason: 'consent_not_given' } });
    const exported = await security.exportSubject({ subject: 'cust-client-1' });
    expect(exported.records.map((r) => [r.token, r.reveal])).to.deep.equal([[made.token, 'redacted']]);
    const log = await security.subjectAccessLog({ subject: 'cust-client-1', from: '2000-01-01T00:00:00Z' });
    expect(log.entries.map((e) => e.action)).to.include.members(['tokenize', 'subject:consent', 'detokenize', 'subject:export']);
    expect(await security.eraseSubject({ subject: 'cust-client-1' })).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
  });

  it('audit: pages from the init row, iterates every row, verifies the chain', async () => {
    const security = as('security');
    const page = await security.listAudit({ after: 0, limit: 2 });
    expect(page.items[0]).to.include({ seq: 1, action: 'vault:init', principal: 'cli' });
    expect(page.next).to.equal(2);
    const rows = [];
    for await (const row of security.auditRows({ limit: 3 })) rows.push(row.seq);
    expect(rows.slice(0, 4)).to.deep.equal([1, 2, 3, 4]);
    const verify = await security.verifyAudit();
    expect(verify.ok).to.equal(true);
  });

  it('policy report: security reads it, support is refused', async () => {
    const report = await as('security').policyReport();
    expect(report.roles.find((r) => r.role === 'gateway')?.permissions).to.deep.equal([
      { action: 'detokenize', type: 'pan', reveal: 'plain', purposes: ['charge'] },
    ]);
    const refused = await as('support')
      .policyReport()
      .catch((e) => e);
    expect(refused).to.include({ code: 'forbidden', status: 403 });
  });

  it('keys: list, rotate, rewrap, reencrypt and its job, retire, destroy', async () => {
    const security = as('security');
    await as('billing').tokenize({ items: [{ type: 'name', value: 'Jane Doe' }] });
    const before = await security.listKeys({ tenant: 'default' });
    expect(before.find((k) => k.purpose === 'data' && k.state === 'active')).to.include({ version: 1 });
    const { rotated } = await security.rotateKeys({ tenant: 'default' });
    expect(rotated).to.deep.equal([{ tenant: 'default', purpose: 'data', version: 2, previousVersion: 1 }]);
    const rewrap = await security.rewrapKeys({ target: { type: 'local' } });
    expect(rewrap.failed).to.deep.equal([]);
    const job = await security.startReencrypt({ tenant: 'default' });
    expect(job.kind).to.equal('reencrypt');
    expect((await security.getJob(job.id)).id).to.equal(job.id);
    const done = await security.waitForJob(job.id, { pollMs: 50 });
    expect(done).to.include({ state: 'completed', failed: 0 });
    expect(await security.retireKey(1, { tenant: 'default' })).to.include({ version: 1, state: 'retired' });
    const refused = await security.destroyKey(1, { confirm: 'destroy default/data/v9' }).catch((e) => e);
    expect(refused).to.include({ code: 'confirmation_required', status: 400 });
    expect(await security.destroyKey(1, { confirm: 'destroy default/data/v1' })).to.include({ version: 1, state: 'destroyed' });
  });

  it('typed errors carry code, status and the request id sent as X-Request-Id', async () => {
    const stranger = new VaultClient({ baseUrl: server.url, apiKey: 'pvk_not-a-key' });
    clients.push(stranger);
    const err = await stranger.listKeys({ requestId: 'order-abc_1' }).catch((e) => e);
    expect(err).to.be.instanceOf(VaultApiError);
    expect(err).to.include({ code: 'unauthorized', status: 401, requestId: 'order-abc_1', attempts: 1 });
    const invalid = await as('billing')
      .tokenize({ items: [{ type: 'pan', value: '4111111111111112' }] })
      .catch((e) => e);
    expect(invalid).to.include({ code: 'invalid_value', status: 400 });
    expect(invalid.details).to.deep.include({ index: 0 });
    // An id the vault would replace (it could carry a card number) is refused before anything is sent.
    const refused = await as('billing')
      .listAudit({ requestId: '4111-1111-1111-1111' })
      .catch((e) => e);
    expect(refused).to.be.instanceOf(TypeError);
    await as('billing').tokenize({ items: [{ type: 'text', value: 'x' }] }, { requestId: 'trace-tokenize-xyz' });
    const rows = [];
    for await (const row of as('security').auditRows()) rows.push(row);
    expect(rows.filter((r) => r.requestId === 'trace-tokenize-xyz').map((r) => r.action)).to.deep.equal(['tokenize']);
  });

  it('batching: more than 1,000 values go in several requests, results reassembled in order', async () => {
    const values = Array.from({ length: 2_345 }, (_, i) => `value ${i}`);
    const tokens = await as('billing').tokenizeAll(values.map((value) => ({ type: 'text' as const, value })));
    expect(tokens).to.have.length(values.length);
    const revealed = await as('support').detokenizeAll(
      tokens.map((t) => t.token),
      { reveal: 'plain' },
    );
    // support may only see masked text: the reveal is lowered, the order kept (each mask is as long as its value).
    expect(revealed.map((r) => (r.ok ? r.token : null))).to.deep.equal(tokens.map((t) => t.token));
    expect(revealed.map((r) => (r.ok ? r.value?.length : null))).to.deep.equal(values.map((v) => v.length));
    const rows = [];
    for await (const row of as('security').auditRows())
      if (row.action === 'tokenize' && row.tokens.length > 300) rows.push(row.tokens.length);
    expect(rows).to.deep.equal([1000, 1000, 345]);
  });
});

/** A local server answering from a script: each request gets the next answer (the last one repeats); `hang` never answers. */
type Scripted = { status: number; body?: object; headers?: Record<string, string> } | 'hang';

async function scriptedServer(answers: Scripted[]) {
  const seen: { at: number; method: string; url: string; requestId: string | undefined; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ at: Date.now(), method: req.method!, url: req.url!, requestId: req.headers['x-request-id'] as string, body });
      const answer = answers[Math.min(seen.length - 1, answers.length - 1)];
      if (answer === 'hang') return;
      res.writeHead(answer.status, { 'Content-Type': 'application/json', ...answer.headers });
      res.end(answer.body ? JSON.stringify(answer.body) : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const error = (status: number, code: string, headers?: Record<string, string>): Scripted => ({
  status,
  body: { error: { code, message: code, requestId: 'x' } },
  headers,
});
const TOKENIZED: Scripted = { status: 200, body: { items: [{ token: 'tok_x', type: 'pan' }] } };
const ONE_PAN = { items: [{ type: 'pan' as const, value: PAN }] };

describe('typed client: retries, timeouts and aborts (scripted server)', function () {
  this.timeout(30_000);
  let scripted: Awaited<ReturnType<typeof scriptedServer>> | undefined;
  let vault: VaultClient | undefined;
  const start = async (answers: Scripted[], options: Partial<client.VaultClientOptions> = {}) => {
    scripted = await scriptedServer(answers);
    vault = new VaultClient({ baseUrl: scripted.url, apiKey: 'pvk_test', retry: { baseDelayMs: 1, maxDelayMs: 3000 }, ...options });
    return { vault, seen: scripted.seen };
  };
  afterEach(async () => {
    vault?.close();
    await scripted?.close();
    vault = scripted = undefined;
  });

  it('429 with Retry-After, then 200: waits at least Retry-After, then succeeds with the same request id', async () => {
    const { vault, seen } = await start([error(429, 'rate_limited', { 'Retry-After': '1' }), TOKENIZED]);
    const items = await vault.tokenize(ONE_PAN);
    expect(items).to.deep.equal([{ token: 'tok_x', type: 'pan' }]);
    expect(seen).to.have.length(2);
    // The wait is the behaviour under test: a lower bound from the server's own Retry-After (1 s).
    expect(seen[1].at - seen[0].at).to.be.at.least(950);
    expect(seen[1].requestId).to.equal(seen[0].requestId);
    expect(seen[1].body).to.equal(seen[0].body);
  });

  it('503 overloaded, then 200: a non-idempotent tokenize is retried (refused before any work)', async () => {
    const { vault, seen } = await start([error(503, 'overloaded'), TOKENIZED]);
    await vault.tokenize(ONE_PAN);
    expect(seen).to.have.length(2);
  });

  it('503 store_unavailable: tokenize is not retried (it may have committed), detokenize and deterministic tokenize are', async () => {
    const { vault, seen } = await start([error(503, 'store_unavailable'), TOKENIZED]);
    const err = await vault.tokenize(ONE_PAN).catch((e) => e);
    expect(err).to.include({ code: 'store_unavailable', status: 503, attempts: 1 });
    await vault.tokenize({ items: [{ type: 'pan', value: PAN, deterministic: true }] });
    expect(seen).to.have.length(2); // the deterministic one succeeded on its first attempt (the script moved on)
    await scripted!.close();
    const next = await start([error(503, 'store_unavailable'), { status: 200, body: { items: [] } }]);
    await next.vault.detokenize({ tokens: ['tok_x'] });
    expect(next.seen).to.have.length(2);
  });

  it('a 400, a 401 and 429 too_many_auth_failures are never retried', async () => {
    for (const answer of [error(400, 'invalid_request'), error(401, 'unauthorized'), error(429, 'too_many_auth_failures')]) {
      const { vault, seen } = await start([answer, { status: 200, body: { keys: [] } }]);
      const err = await vault.listKeys().catch((e) => e);
      expect(err).to.be.instanceOf(VaultApiError);
      expect(seen).to.have.length(1);
      await scripted!.close();
    }
  });

  it('gives up after maxAttempts, and at once when Retry-After is longer than maxDelayMs', async () => {
    const { vault, seen } = await start([error(503, 'overloaded')], { retry: { maxAttempts: 3, baseDelayMs: 1 } });
    const err = await vault.listKeys().catch((e) => e);
    expect(err).to.include({ code: 'overloaded', attempts: 3 });
    expect(seen).to.have.length(3);
    await scripted!.close();
    const next = await start([error(429, 'rate_limited', { 'Retry-After': '120' })], { retry: { maxDelayMs: 5000 } });
    const late = await next.vault.listKeys().catch((e) => e);
    expect(late).to.include({ code: 'rate_limited', retryAfterMs: 120_000, attempts: 1 });
    expect(next.seen).to.have.length(1);
  });

  it('an answer without the vault’s error body gets code http_<status>', async () => {
    const { vault } = await start([{ status: 502, body: { oops: true } }]);
    const err = await vault.verifyAudit().catch((e) => e);
    expect(err).to.include({ code: 'http_502', status: 502 });
  });

  it('times out an attempt that gets no answer (code timeout, not retried)', async () => {
    const { vault, seen } = await start(['hang'], { timeoutMs: 200 });
    const err = await vault.listKeys().catch((e) => e);
    expect(err).to.be.instanceOf(VaultConnectionError);
    expect(err.code).to.equal('timeout');
    expect(seen).to.have.length(1);
  });

  it('an AbortSignal stops a call in flight and one waiting to retry', async () => {
    const { vault } = await start(['hang']);
    const controller = new AbortController();
    const pending = vault.listKeys({ signal: controller.signal }).catch((e) => e);
    while (scripted!.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    expect((await pending).name).to.equal('AbortError');
    await scripted!.close();
    const waiting = await start([error(429, 'rate_limited', { 'Retry-After': '2' })]);
    const second = new AbortController();
    const backingOff = waiting.vault.listKeys({ signal: second.signal }).catch((e) => e);
    while (waiting.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    second.abort();
    expect((await backingOff).name).to.equal('AbortError');
    expect(waiting.seen).to.have.length(1);
    const already = await waiting.vault.listKeys({ signal: AbortSignal.abort() }).catch((e) => e);
    expect(already.name).to.equal('AbortError');
    expect(waiting.seen).to.have.length(1);
  });

  it('a refused connection is a VaultConnectionError (connection_failed)', async () => {
    const { url, close } = await scriptedServer([TOKENIZED]);
    await close();
    const gone = new VaultClient({ baseUrl: url });
    const err = await gone.listKeys().catch((e) => e);
    gone.close();
    expect(err).to.be.instanceOf(VaultConnectionError);
    expect(err.code).to.equal('connection_failed');
  });

  it('a batch that fails part-way names what was done before', async () => {
    const { vault, seen } = await start([
      { status: 200, body: { items: Array.from({ length: 1000 }, (_, i) => ({ token: `tok_${i}`, type: 'text' })) } },
      error(400, 'invalid_value'),
    ]);
    const err = await vault.tokenizeAll(Array.from({ length: 1500 }, () => ({ type: 'text' as const, value: 'v' }))).catch((e) => e);
    expect(err).to.be.instanceOf(VaultBatchError);
    expect(err.code).to.equal('invalid_value');
    expect(err.completed).to.have.length(1000);
    expect(seen.map((s) => JSON.parse(s.body).items.length)).to.deep.equal([1000, 500]);
  });
});
