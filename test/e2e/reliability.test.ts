import { expect } from 'chai';
import Database from 'better-sqlite3';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cli, initVault, serve, ServerProcess } from '../helpers/processes';
import { randomPan } from '../helpers/load';
import { tempDir } from '../helpers/test-vault';
import { firstOf, waitFor } from '../helpers/wait-for';

/**
 * Issue 4, "Prove it" #1, #3, #8 and #9 (SIGTERM), against real `pii-vault serve` processes: crash
 * durability under kill -9, graceful SIGTERM under load, slow-loris and huge-body brakes, and a
 * canary scan of everything the vault writes or says.
 */

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;

function portOf(server: ServerProcess): number {
  return Number(new URL(server.url).port);
}

/** The server process's resident set size in bytes, from /proc. */
function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------
// A small HTTP client on node:http that tells HTTP answers from connection-level failures.
// ---------------------------------------------------------------------------------------------

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** The request never got a complete HTTP answer: refused, reset, or cut mid-response. */
class ConnectionError extends Error {
  constructor(readonly code: string) {
    super(`connection error: ${code}`);
  }
}

interface RequestOptions {
  method?: string;
  key?: string;
  json?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
  agent?: http.Agent;
  timeoutMs?: number;
}

function request(baseUrl: string, path: string, opts: RequestOptions = {}): Promise<HttpResult> {
  const body = opts.rawBody ?? (opts.json !== undefined ? JSON.stringify(opts.json) : undefined);
  const headers: Record<string, string> = {
    ...(opts.key ? { Authorization: `Bearer ${opts.key}` } : {}),
    ...(opts.json !== undefined ? { 'Content-Type': 'application/json' } : {}),
    ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}),
    ...opts.headers,
  };
  return new Promise<HttpResult>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      reject(new ConnectionError((err as NodeJS.ErrnoException)?.code ?? String((err as Error)?.message ?? err)));
    };
    const req = http.request(
      baseUrl + path,
      { method: opts.method ?? (body !== undefined ? 'POST' : 'GET'), headers, agent: opts.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => fail(new Error('aborted')));
        res.on('error', fail);
        res.on('end', () => {
          if (settled) return;
          if (!res.complete) return fail(new Error('incomplete'));
          settled = true;
          resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    req.on('error', fail);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.end(body);
  });
}

/**
 * `clients` concurrent billing clients, each sending single-item and small-batch PAN tokenize
 * requests back to back. Every token acknowledged with a complete 200 is remembered with its value;
 * every request's outcome is kept with its start and end time.
 */
interface Outcome {
  start: number;
  end: number;
  status?: number;
  text?: string;
  error?: string;
}

class TokenizeLoad {
  readonly acked = new Map<string, string>();
  readonly outcomes: Outcome[] = [];
  private running = true;
  private readonly workers: Promise<void>[] = [];
  private readonly agent = new http.Agent({ keepAlive: true });

  constructor(
    private readonly url: string,
    private readonly billingKey: string,
    clients = 8,
  ) {
    for (let i = 0; i < clients; i++) this.workers.push(this.work());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
    this.agent.destroy();
  }

  private async work(): Promise<void> {
    while (this.running) {
      const values = Array.from({ length: Math.random() < 0.5 ? 1 : randomInt(2, 6) }, randomPan);
      const outcome: Outcome = { start: Date.now(), end: 0 };
      try {
        const res = await request(this.url, '/v1/tokenize', {
          key: this.billingKey,
          json: { items: values.map((value) => ({ type: 'pan', value })) },
          agent: this.agent,
        });
        outcome.end = Date.now();
        outcome.status = res.status;
        if (res.status === 200) {
          const items = JSON.parse(res.text).items as Array<{ token: string }>;
          if (items.length !== values.length) throw new Error(`200 with ${items.length} items for ${values.length} values`);
          items.forEach((item, i) => this.acked.set(item.token, values[i]));
        } else {
          outcome.text = res.text.slice(0, 300);
        }
      } catch (err) {
        outcome.end = Date.now();
        if (!(err instanceof ConnectionError)) {
          outcome.text = `unexpected: ${String(err)}`;
        } else {
          outcome.error = err.code;
          await sleep(10);
        }
      }
      this.outcomes.push(outcome);
    }
  }
}

/** Detokenizes every token (gateway, purpose charge, 1,000 per request); returns the mismatches. */
async function detokenizeAll(url: string, gatewayKey: string, expected: Map<string, string>): Promise<string[]> {
  const wrong: string[] = [];
  const tokens = [...expected.keys()];
  for (let i = 0; i < tokens.length; i += 1000) {
    const res = await request(url, '/v1/detokenize', { key: gatewayKey, json: { tokens: tokens.slice(i, i + 1000), purpose: 'charge' } });
    if (res.status !== 200) {
      wrong.push(`batch ${i}: ${res.status} ${res.text.slice(0, 300)}`);
      continue;
    }
    for (const item of JSON.parse(res.text).items) if (item.value !== expected.get(item.token)) wrong.push(JSON.stringify(item));
  }
  return wrong;
}

function integrityCheck(dir: string): string {
  const db = new Database(join(dir, 'vault.db'), { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Raw sockets, for clients that misbehave at the HTTP level.
// ---------------------------------------------------------------------------------------------

interface RawConnection {
  socket: net.Socket;
  /** Everything the server sent. */
  received(): string;
  /** ms since connect when the server's first byte arrived / the socket closed, or null. */
  firstByteAt(): number | null;
  closedAt(): number | null;
  done: Promise<void>;
}

async function rawConnect(port: number): Promise<RawConnection> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined); // EPIPE/ECONNRESET once the server cuts us: expected
  await once(socket, 'connect');
  const start = Date.now();
  let text = '';
  let firstByte: number | null = null;
  let closed: number | null = null;
  socket.on('data', (chunk: Buffer) => {
    firstByte ??= Date.now() - start;
    text += chunk.toString('latin1');
  });
  const done = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = Date.now() - start;
      resolve();
    }),
  );
  return { socket, received: () => text, firstByteAt: () => firstByte, closedAt: () => closed, done };
}

/** Sends `head`, then one byte of `drip` every `everyMs` until the server answers or closes (or `maxMs`). */
async function slowClient(port: number, head: string, drip: string, everyMs: number, maxMs: number) {
  const conn = await rawConnect(port);
  conn.socket.write(head);
  let sent = 0;
  const timer = setInterval(() => {
    if (conn.socket.writable && sent < drip.length) conn.socket.write(drip[sent++]);
  }, everyMs);
  const answered = new Promise<void>((resolve) => conn.socket.once('data', () => resolve()));
  await firstOf(maxMs, conn.done, answered);
  clearInterval(timer);
  // The first moment the server made clear it was done with us: an answer (408) or the close.
  const cutAfterMs = [conn.firstByteAt(), conn.closedAt()].filter((t): t is number => t !== null).sort((a, b) => a - b)[0] ?? null;
  await firstOf(2000, conn.done);
  conn.socket.destroy();
  return { cutAfterMs, bytesDripped: sent, response: conn.received(), closedAfterMs: conn.closedAt() };
}

function statusOf(rawResponse: string): number | null {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(rawResponse);
  return m ? Number(m[1]) : null;
}

function jsonBodyOf(rawResponse: string): any {
  const at = rawResponse.indexOf('\r\n\r\n');
  if (at < 0) return undefined;
  let body = rawResponse.slice(at + 4);
  if (/^transfer-encoding:\s*chunked/im.test(rawResponse.slice(0, at))) {
    // Single-chunk bodies are all an error response needs.
    const m = /^[0-9a-f]+\r\n([\s\S]*?)\r\n/i.exec(body);
    body = m ? m[1] : body;
  }
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Canaries, and the forms in which they must never show up.
// ---------------------------------------------------------------------------------------------

interface Canary {
  name: string;
  /** The value as sent, then its normalised and other textual forms. */
  forms: string[];
}

const CANARIES: Canary[] = [
  { name: 'pan', forms: ['4000056655665556', '4000 0566 5566 5556', '4000-0566-5566-5556'] },
  { name: 'pan (fails Luhn)', forms: ['4000056655665557', '4000 0566 5566 5557'] },
  { name: 'ssn', forms: ['219-09-9999', '219099999', '219 09 9999'] },
  { name: 'email', forms: ['canary.zebulon@canary-mail.example', 'canary.zebulon'] },
  { name: 'name', forms: ['Zebulon Canarywood', 'Canarywood'] },
  { name: 'phone', forms: ['+14155552671', '14155552671'] },
  { name: 'text', forms: ['the-canary-sings-at-midnight'] },
  { name: 'iban', forms: ['GB82WEST12345698765432', 'GB82 WEST 1234 5698 7654 32'] },
  { name: 'dob', forms: ['1971-07-13'] },
  { name: 'address', forms: ['742 Canary Terrace, Springfield', '742 Canary Terrace'] },
  { name: 'subject', forms: ['canary-subject-77'] },
];

/**
 * base64 of `value` as it would appear inside a longer base64 string, at each of the three byte
 * alignments: only the characters that depend on `value`'s bytes alone.
 */
function base64Alignments(value: Buffer): string[] {
  const out: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), value]).toString('base64');
    const from = Math.ceil((8 * shift) / 6);
    const to = Math.floor((8 * (shift + value.length)) / 6); // exclusive
    out.push(encoded.slice(from, to));
  }
  return out;
}

/** Every encoded form of every canary, as [label, bytes]. */
function canaryNeedles(): Array<[string, Buffer]> {
  const needles: Array<[string, Buffer]> = [];
  for (const canary of CANARIES) {
    for (const form of canary.forms) {
      const utf8 = Buffer.from(form, 'utf8');
      const variants = new Set([form, form.toLowerCase(), form.toUpperCase()]);
      for (const v of variants) needles.push([`${canary.name} "${v}" raw`, Buffer.from(v, 'utf8')]);
      for (const b64 of base64Alignments(utf8)) {
        needles.push([`${canary.name} "${form}" base64`, Buffer.from(b64)]);
        needles.push([`${canary.name} "${form}" base64url`, Buffer.from(b64.replace(/\+/g, '-').replace(/\//g, '_'))]);
      }
      needles.push([`${canary.name} "${form}" hex`, Buffer.from(utf8.toString('hex'))]);
      needles.push([`${canary.name} "${form}" HEX`, Buffer.from(utf8.toString('hex').toUpperCase())]);
      needles.push([`${canary.name} "${form}" utf16le`, Buffer.from(form, 'utf16le')]);
      const escaped = JSON.stringify(form)
        .slice(1, -1)
        .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
      if (escaped !== form) needles.push([`${canary.name} "${form}" json-escaped`, Buffer.from(escaped)]);
    }
  }
  return needles;
}

function scanForCanaries(sources: Array<[string, Buffer]>): string[] {
  const needles = canaryNeedles();
  const hits: string[] = [];
  for (const [where, haystack] of sources) {
    for (const [what, needle] of needles) {
      const at = haystack.indexOf(needle);
      if (at >= 0) {
        const context = haystack
          .subarray(Math.max(0, at - 60), at + needle.length + 60)
          .toString('latin1')
          .replace(/[^\x20-\x7e]/g, '.');
        hits.push(`${where}: ${what} at ${at}: …${context}…`);
      }
    }
  }
  return hits;
}

// ---------------------------------------------------------------------------------------------

describe('end to end: reliability — crashes, SIGTERM, slow clients, huge bodies, secrets hygiene (real server processes)', function () {
  this.timeout(60_000);
  let root: string;
  let servers: ServerProcess[] = [];
  let sockets: net.Socket[] = [];

  /** Starts a server and remembers it so afterEach kills it whatever happens. */
  async function start(dir: string, env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
    const server = await serve(dir, { env });
    servers.push(server);
    return server;
  }

  before(() => {
    root = tempDir('pii-vault-reliability-');
  });
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets = [];
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    servers = [];
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('kill -9 at random moments under concurrent tokenize load (12 rounds): every acknowledged token survives, integrity_check ok, audit chain intact', async function () {
    this.timeout(180_000);
    const started = Date.now();
    const dir = join(root, 'crash');
    const keys = initVault(dir, { logLevel: 'error' });
    const acked = new Map<string, string>();
    const rounds: string[] = [];
    const unexpected: string[] = [];
    for (let round = 0; round < 12; round++) {
      const server = await start(dir);
      const load = new TokenizeLoad(server.url, keys.billing, 8);
      const delay = randomInt(50, 401);
      await sleep(delay);
      await server.stop('SIGKILL');
      await load.stop();
      servers = servers.filter((s) => s !== server);
      for (const [token, value] of load.acked) acked.set(token, value);
      const answered = load.outcomes.filter((o) => o.status !== undefined);
      for (const o of load.outcomes)
        if ((o.status !== undefined && o.status !== 200) || o.text?.startsWith('unexpected')) unexpected.push(`${o.status} ${o.text}`);
      rounds.push(
        `${delay}ms: ${load.acked.size} tokens in ${answered.length} answers, ${load.outcomes.length - answered.length} connection errors`,
      );
    }

    const server = await start(dir);
    const wrong = await detokenizeAll(server.url, keys.gateway, acked);
    expect(await server.stop('SIGTERM'), server.output()).to.equal(0);
    servers = [];
    console.log(`      crash rounds: ${rounds.join('; ')}`);
    console.log(`      ${acked.size} acknowledged tokens checked after 12 kills in ${Date.now() - started} ms`);

    expect(unexpected, unexpected.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(acked.size, 'the load acknowledged too few tokens for the test to mean anything').to.be.greaterThan(100);
    expect(wrong, wrong.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(integrityCheck(dir)).to.equal('ok');
    const verify = cli(['audit', 'verify', '--data-dir', dir]);
    expect(verify.status, `${verify.stdout}${verify.stderr}`).to.equal(0);
  });

  it('SIGTERM during load: exit 0, no 5xx, in-flight requests finish or fail at the connection level, every 200 is durable', async function () {
    this.timeout(90_000);
    const dir = join(root, 'sigterm');
    const shutdownTimeoutMs = 20_000;
    const keys = initVault(dir, { logLevel: 'warn', shutdownTimeoutMs });
    const server = await start(dir);
    const load = new TokenizeLoad(server.url, keys.billing, 8);
    await waitFor(() => load.acked.size >= 20, { what: 'the load to be under way (20 acknowledged tokenizations)' });
    const signalledAt = Date.now();
    const code = await server.stop('SIGTERM');
    const exitedAt = Date.now();
    await load.stop();
    servers = [];

    const inFlight = load.outcomes.filter((o) => o.start < signalledAt && o.end >= signalledAt);
    const after = load.outcomes.filter((o) => o.start >= signalledAt);
    const summary = (list: Outcome[]) => {
      const counts: Record<string, number> = {};
      for (const o of list)
        counts[o.status !== undefined ? String(o.status) : `conn:${o.error}`] =
          (counts[o.status !== undefined ? String(o.status) : `conn:${o.error}`] ?? 0) + 1;
      return JSON.stringify(counts);
    };
    console.log(
      `      SIGTERM: exit ${code} after ${exitedAt - signalledAt} ms; before: ${summary(load.outcomes.filter((o) => o.end < signalledAt))}, ` +
        `in flight: ${summary(inFlight)}, sent after: ${summary(after)}; ${load.acked.size} tokens acknowledged`,
    );
    expect(code, server.output()).to.equal(0);
    const bad = load.outcomes.filter((o) => (o.status !== undefined && o.status !== 200) || o.text?.startsWith('unexpected'));
    expect(
      bad.map((o) => `${o.status} ${o.text}`),
      'every HTTP answer during shutdown is a 200 (never a 5xx)',
    ).to.deep.equal([]);
    expect(load.acked.size).to.be.greaterThan(20);

    const again = await start(dir);
    const wrong = await detokenizeAll(again.url, keys.gateway, load.acked);
    expect(wrong, wrong.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(await again.stop('SIGTERM')).to.equal(0);
    servers = [];
    expect(integrityCheck(dir)).to.equal('ok');
    // "Stop accepting, finish in-flight requests": draining 8 clients' requests must not run into
    // shutdownTimeoutMs. If the server kept taking new requests on kept-alive connections, it would
    // only stop when the timeout cut them, and say so in its log.
    expect(server.output(), 'the shutdown ran into shutdownTimeoutMs').to.not.include('shutdown timeout reached');
    expect(exitedAt - signalledAt, 'exit before shutdownTimeoutMs').to.be.below(shutdownTimeoutMs);
  });

  it('slow-loris: a header and a body dripped at 1 byte/300 ms are cut after the configured timeouts while other clients are served', async function () {
    this.timeout(60_000);
    const dir = join(root, 'loris');
    const headersTimeoutMs = 1000;
    const requestTimeoutMs = 2000;
    const keys = initVault(dir, { logLevel: 'error', headersTimeoutMs, requestTimeoutMs });
    const server = await start(dir);
    const port = portOf(server);
    // Long enough that a server which never cuts is told apart from a slow day.
    const dripForMs = 20_000;

    const slowHeaders = slowClient(port, 'POST /v1/tokenize HTTP/1.1\r\nHost: x\r\n', 'X-Padding: ' + 'a'.repeat(200), 300, dripForMs);
    const slowBody = slowClient(
      port,
      `POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keys.billing}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`,
      '{"items":[{"type":"pan","value":"' + '4'.repeat(100),
      300,
      dripForMs,
    );
    const connectedAt = Date.now();
    // Meanwhile, well-behaved clients on their own connections.
    const normal = (async () => {
      const statuses: number[] = [];
      let firstServedAt = 0;
      for (let i = 0; i < 5; i++) {
        const res = await request(server.url, '/v1/tokenize', {
          key: keys.billing,
          json: { items: [{ type: 'pan', value: randomPan() }] },
          timeoutMs: 10_000,
        });
        firstServedAt ||= Date.now() - connectedAt;
        statuses.push(res.status);
        await sleep(400);
      }
      return { statuses, firstServedAt };
    })();
    const [headers, body, served] = await Promise.all([slowHeaders, slowBody, normal]);
    console.log(
      `      slow headers cut after ${headers.cutAfterMs} ms (${headers.bytesDripped} bytes dripped, answer ${statusOf(headers.response) ?? 'none'}); ` +
        `slow body cut after ${body.cutAfterMs} ms (${body.bytesDripped} bytes, answer ${statusOf(body.response) ?? 'none'}); ` +
        `normal requests ${served.statuses.join(',')}, the first served after ${served.firstServedAt} ms`,
    );
    for (const [what, result, timeoutMs] of [
      ['slow headers', headers, headersTimeoutMs],
      ['slow body', body, requestTimeoutMs],
    ] as const) {
      expect(result.cutAfterMs, `${what}: the server neither answered nor closed within ${dripForMs} ms`).to.not.equal(null);
      // Node checks the timeouts once per connectionsCheckingInterval (1 s here): cut after the timeout, well before the drip ends.
      expect(result.cutAfterMs!, `${what}: cut before its timeout`).to.be.at.least(timeoutMs - 100);
      expect(result.cutAfterMs!, `${what}: cut far later than its timeout`).to.be.below(dripForMs / 2);
      const status = statusOf(result.response);
      if (status !== null) expect(status, `${what}: ${result.response.slice(0, 200)}`).to.equal(408);
      expect(result.closedAfterMs, `${what}: answered but left the connection open`).to.not.equal(null);
    }
    expect(served.statuses).to.deep.equal([200, 200, 200, 200, 200]);
    // Order of events, not speed: a well-behaved client was served while both slow clients still held their connections.
    expect(served.firstServedAt, 'the first normal request waited for the slow clients to be cut').to.be.below(
      Math.min(headers.cutAfterMs!, body.cutAfterMs!),
    );
    expect((await request(server.url, '/healthz')).status).to.equal(200);
  });

  it('a 100 MiB Content-Length is refused with 413 payload_too_large after the headers and 64 KiB, without buffering', async function () {
    this.timeout(20_000);
    const dir = join(root, 'huge-length');
    const keys = initVault(dir, { logLevel: 'error' });
    const server = await start(dir);
    const pid = server.proc.pid!;
    expect(
      (await request(server.url, '/v1/tokenize', { key: keys.billing, json: { items: [{ type: 'pan', value: randomPan() }] } })).status,
    ).to.equal(200);
    const rssBefore = rssBytes(pid);

    const conn = await rawConnect(portOf(server));
    sockets.push(conn.socket);
    conn.socket.write(
      `POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keys.billing}\r\nContent-Type: application/json\r\nContent-Length: ${100 * MiB}\r\n\r\n`,
    );
    conn.socket.write('{"items":[{"type":"text","value":"' + 'x'.repeat(64 * 1024 - 34));
    const answered = new Promise<void>((resolve) => {
      const check = () => (/\r\n\r\n/.test(conn.received()) ? resolve() : undefined);
      conn.socket.on('data', check);
    });
    await firstOf(30_000, answered, conn.done);
    // The rest of a short error body: complete once it parses (or the server closed).
    await waitFor(() => jsonBodyOf(conn.received()) !== undefined || conn.closedAt() !== null, {
      what: 'the rest of the error body, or the close',
    });
    const response = conn.received();
    const rssAfter = rssBytes(pid);
    conn.socket.destroy();
    console.log(
      `      100 MiB Content-Length: answer ${statusOf(response) ?? 'none'} after ${conn.firstByteAt() ?? '-'} ms, closed ${conn.closedAt() ?? 'no'}; ` +
        `RSS ${(rssBefore / MiB).toFixed(1)} → ${(rssAfter / MiB).toFixed(1)} MiB`,
    );
    expect(
      statusOf(response),
      `no HTTP answer within 30 s of sending the headers and 64 KiB (received: ${JSON.stringify(response.slice(0, 200))})`,
    ).to.equal(413);
    expect(jsonBodyOf(response)?.error?.code).to.equal('payload_too_large');
    expect(rssAfter - rssBefore).to.be.below(50 * 1000 * 1000);
    expect((await request(server.url, '/healthz', { timeoutMs: 10_000 })).status).to.equal(200);
  });

  it('a chunked 100 MiB stream is answered with 413 (or cut) before ~2 MiB were sent, and the server stays healthy', async function () {
    this.timeout(20_000);
    const dir = join(root, 'huge-chunked');
    const keys = initVault(dir, { logLevel: 'error' });
    const server = await start(dir);
    const pid = server.proc.pid!;
    expect(
      (await request(server.url, '/v1/tokenize', { key: keys.billing, json: { items: [{ type: 'pan', value: randomPan() }] } })).status,
    ).to.equal(200);
    const rssBefore = rssBytes(pid);

    const conn = await rawConnect(portOf(server));
    sockets.push(conn.socket);
    conn.socket.write(
      `POST /v1/tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keys.billing}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
    let sent = 0;
    let sentWhenStopped: number | null = null;
    const hardCap = 100 * MiB;
    const stopped = () => conn.firstByteAt() !== null || conn.closedAt() !== null || !conn.socket.writable;
    // Paced so the server has every chance to read what was sent before more comes: past the 1 MiB
    // body limit, each further chunk waits up to 5 s for the server's answer, whatever the machine's speed.
    while (sent < hardCap) {
      if (stopped()) {
        sentWhenStopped = sent;
        break;
      }
      if (!conn.socket.write(frame)) await firstOf(1000, once(conn.socket, 'drain'), conn.done);
      sent += chunk.length;
      if (sent < MiB) await sleep(10);
      else for (let waited = 0; waited < 5000 && !stopped(); waited += 20) await sleep(20);
    }
    await firstOf(2000, conn.done);
    const response = conn.received();
    const rssAfter = rssBytes(pid);
    conn.socket.destroy();
    console.log(
      `      chunked stream: stopped at ${sentWhenStopped === null ? 'never' : (sentWhenStopped / MiB).toFixed(2) + ' MiB'} (sent ${(sent / MiB).toFixed(1)} MiB), ` +
        `answer ${statusOf(response) ?? 'none'}, closed ${conn.closedAt() ?? 'no'}; RSS ${(rssBefore / MiB).toFixed(1)} → ${(rssAfter / MiB).toFixed(1)} MiB`,
    );
    expect(sentWhenStopped, `the server neither answered nor closed while ${(sent / MiB).toFixed(1)} MiB were streamed`).to.not.equal(null);
    expect(sentWhenStopped!).to.be.at.most(2 * MiB);
    const status = statusOf(response);
    if (status !== null) {
      expect(status, response.slice(0, 300)).to.equal(413);
      expect(jsonBodyOf(response)?.error?.code).to.equal('payload_too_large');
    }
    expect(rssAfter - rssBefore).to.be.below(50 * 1000 * 1000);
    expect((await request(server.url, '/healthz', { timeoutMs: 10_000 })).status).to.equal(200);
  });

  it('secrets hygiene: canaries never appear in output, error bodies, metrics, audit rows, the database, WAL or shm', async function () {
    this.timeout(30_000);
    const dir = join(root, 'hygiene');
    const keys = initVault(dir, { logLevel: 'debug' });
    const server = await start(dir);
    const url = server.url;
    const errorBodies: Array<[string, string]> = [];
    const unexpected: string[] = [];
    /** A request expected to fail with a 4xx: its body is kept for the scan. */
    const refused = async (what: string, path: string, opts: RequestOptions) => {
      const res = await request(url, path, opts);
      if (res.status >= 400) errorBodies.push([`${what} → ${res.status}`, res.text]);
      if (res.status < 400 || res.status >= 500) unexpected.push(`${what}: ${res.status} ${res.text.slice(0, 200)}`);
      return res;
    };
    const ok = async (what: string, path: string, opts: RequestOptions) => {
      const res = await request(url, path, opts);
      if (res.status >= 400) errorBodies.push([`${what} → ${res.status}`, res.text]);
      if (res.status !== 200) unexpected.push(`${what}: ${res.status} ${res.text.slice(0, 200)}`);
      return res.status === 200 ? JSON.parse(res.text) : undefined;
    };

    const values: Record<string, string> = {
      pan: '4000056655665556',
      ssn: '219-09-9999',
      email: 'canary.zebulon@canary-mail.example',
      name: 'Zebulon Canarywood',
      phone: '+14155552671',
      text: 'the-canary-sings-at-midnight',
      iban: 'GB82WEST12345698765432',
      dob: '1971-07-13',
      address: '742 Canary Terrace, Springfield',
    };
    const items = Object.entries(values).map(([type, value]) => ({ type, value, subject: 'canary-subject-77', deterministic: true }));
    const first = await ok('tokenize canaries (deterministic, subject)', '/v1/tokenize', { key: keys.billing, json: { items } });
    const second = await ok('tokenize canaries again', '/v1/tokenize', { key: keys.billing, json: { items } });
    const random = await ok('tokenize canaries (random tokens)', '/v1/tokenize', {
      key: keys.billing,
      json: { items: Object.entries(values).map(([type, value]) => ({ type, value, metadata: { source: 'hygiene-test' } })) },
    });
    const tokens: string[] = [...(first?.items ?? []), ...(random?.items ?? [])].map((i: { token: string }) => i.token);
    expect(second?.items?.map((i: { token: string }) => i.token)).to.deep.equal(first?.items?.map((i: { token: string }) => i.token));

    const asGateway = await ok('detokenize as gateway', '/v1/detokenize', { key: keys.gateway, json: { tokens, purpose: 'charge' } });
    expect(asGateway?.items?.[0]).to.include({ value: values.pan, reveal: 'plain' });
    await ok('detokenize as support', '/v1/detokenize', { key: keys.support, json: { tokens } });
    const metadataReplies: string[] = [];
    for (const token of tokens) {
      const res = await request(url, `/v1/tokens/${encodeURIComponent(token)}`, { key: keys.security });
      if (res.status !== 200) unexpected.push(`metadata ${res.status} ${res.text.slice(0, 200)}`);
      metadataReplies.push(res.text);
    }

    // Invalid requests that carry canaries.
    const tok = (item: Record<string, unknown>) => ({ key: keys.billing, json: { items: [item] } });
    await refused('PAN failing Luhn', '/v1/tokenize', tok({ type: 'pan', value: '4000056655665557' }));
    await refused('spaced PAN failing Luhn', '/v1/tokenize', tok({ type: 'pan', value: '4000 0566 5566 5557' }));
    await refused('SSN canary as a PAN', '/v1/tokenize', tok({ type: 'pan', value: values.ssn }));
    await refused('PAN canary as an SSN', '/v1/tokenize', tok({ type: 'ssn', value: values.pan }));
    await refused('PAN canary as a date of birth', '/v1/tokenize', tok({ type: 'dob', value: values.pan }));
    await refused('unknown field carrying a canary', '/v1/tokenize', tok({ type: 'email', value: values.email, nickname: values.name }));
    await refused('canary as an unknown type', '/v1/tokenize', tok({ type: values.text, value: values.iban }));
    await refused('canary in a wrong-typed field', '/v1/tokenize', tok({ type: 'pan', value: values.pan, deterministic: values.ssn }));
    await refused('canary as a subject that fails its pattern', '/v1/tokenize', tok({ type: 'text', value: 'x', subject: values.address }));
    await refused(
      'canary under metadata (nested object)',
      '/v1/tokenize',
      tok({ type: 'text', value: 'x', metadata: { customer: { ssn: values.ssn, pan: values.pan } } }),
    );
    await refused('canary as a metadata key', '/v1/tokenize', tok({ type: 'text', value: 'x', metadata: { [values.email]: true } }));
    await refused(
      'canary nested under a metadata key outside the key pattern',
      '/v1/tokenize',
      tok({ type: 'text', value: 'x', metadata: { 'customer record': { ssn: values.ssn } } }),
    );
    await refused(
      'canary under metadata (too long)',
      '/v1/tokenize',
      tok({ type: 'text', value: 'x', metadata: { note: `${values.address} `.repeat(20) } }),
    );
    await refused('canary under metadata in a batch that fails', '/v1/tokenize', {
      key: keys.billing,
      json: {
        items: [
          { type: 'name', value: values.name, metadata: { note: values.phone, who: values.dob } },
          { type: 'pan', value: '4000056655665557' },
        ],
      },
    });
    // (A tenant id that fits the tenant pattern is an identifier, echoed and audited by design; an email does not fit.)
    await refused('canary email as tenant', '/v1/tokenize', {
      key: keys.billing,
      json: { tenant: values.email, items: [{ type: 'pan', value: values.pan }] },
    });
    await refused('canary PAN as tenant of a detokenize', '/v1/detokenize', {
      key: keys.gateway,
      json: { tenant: values.pan, tokens: ['tok_x'], purpose: 'charge' },
    });
    await refused('canary as an unknown field name', '/v1/tokenize', {
      key: keys.billing,
      json: { items: [{ type: 'pan', value: randomPan(), [values.pan]: 1 }] },
    });
    await refused('canary in an unknown top-level field', '/v1/tokenize', {
      key: keys.billing,
      json: { items: [{ type: 'pan', value: values.pan }], note: values.iban },
    });
    await refused('canary token with a space', '/v1/detokenize', { key: keys.gateway, json: { tokens: [values.name], purpose: 'charge' } });
    await refused('canary as purpose', '/v1/detokenize', { key: keys.gateway, json: { tokens: [values.pan], purpose: values.address } });
    const panAsToken = await request(url, '/v1/detokenize', {
      key: keys.gateway,
      json: { tokens: [values.pan, values.ssn, values.email], purpose: 'charge' },
    });
    // A 200 with per-item not_found; it echoes what the caller sent, so it is not scanned — but it must not be a value.
    expect(panAsToken.status, panAsToken.text).to.equal(200);
    for (const item of JSON.parse(panAsToken.text).items) expect(item.error?.code, JSON.stringify(item)).to.equal('not_found');
    await refused('canary PAN as a token path (security)', `/v1/tokens/${values.pan}`, { key: keys.security });
    await refused('canary PAN as a token path (support)', `/v1/tokens/${values.pan}`, { key: keys.support });
    await refused('canary PAN as a token path (delete)', `/v1/tokens/${values.pan}`, { key: keys.billing, method: 'DELETE' });
    await refused('canary SSN as a token path', `/v1/tokens/${values.ssn}`, { key: keys.security });
    await refused('canary name as a token path', `/v1/tokens/${encodeURIComponent(values.name)}`, { key: keys.security });
    await refused('canary in an unknown route', `/v1/${values.pan}`, { key: keys.security });
    await refused('canary in a query', `/v1/audit?after=${values.pan}`, { key: keys.security });
    await refused('canary as an unknown query key', `/v1/audit?${values.text}=1`, { key: keys.security });
    await refused('malformed JSON with canaries', '/v1/tokenize', {
      key: keys.billing,
      rawBody: `{"items":[{"type":"ssn","value":"${values.ssn}"},{"type":"pan","value":"${values.pan}"`,
      headers: { 'Content-Type': 'application/json' },
    });
    await refused('malformed JSON (bad token) with canaries', '/v1/tokenize', {
      key: keys.billing,
      rawBody: `{"items":[{"type":"pan","value":${values.pan}x}]}`,
      headers: { 'Content-Type': 'application/json' },
    });
    await refused('text/plain body with canaries', '/v1/tokenize', {
      key: keys.billing,
      rawBody: `pan=${values.pan}&ssn=${values.ssn}`,
      headers: { 'Content-Type': 'text/plain' },
    });
    await refused('wrong API key', '/v1/tokenize', { key: 'pvk_' + 'A'.repeat(43), json: { items: [{ type: 'pan', value: values.pan }] } });
    await refused('canary as the API key', '/v1/detokenize', { key: values.text, json: { tokens: [values.pan], purpose: 'charge' } });
    await refused('canary PAN as the API key', '/v1/tokens/x', { key: values.pan });

    const metrics = await request(url, '/metrics');
    expect(metrics.status).to.equal(200);
    const auditPages: string[] = [];
    let after = 0;
    for (let page = 0; page < 100; page++) {
      const res = await request(url, `/v1/audit?after=${after}&limit=1000`, { key: keys.security });
      expect(res.status, res.text).to.equal(200);
      auditPages.push(res.text);
      const next = JSON.parse(res.text).next;
      if (next === null) break;
      after = next;
    }
    const auditRows = auditPages.flatMap((p) => JSON.parse(p).items);
    expect(auditRows.length).to.be.greaterThan(30);

    // WAL and shm as they are while the server runs (a clean stop checkpoints and removes them).
    const live: Array<[string, Buffer]> = [];
    for (const file of ['vault.db', 'vault.db-wal', 'vault.db-shm']) {
      if (existsSync(join(dir, file))) live.push([`${file} (while serving)`, readFileSync(join(dir, file))]);
    }
    expect(await server.stop('SIGTERM')).to.equal(0);
    servers = [];
    const stopped: Array<[string, Buffer]> = [];
    for (const file of ['vault.db', 'vault.db-wal', 'vault.db-shm']) {
      if (existsSync(join(dir, file))) stopped.push([`${file} (after stop)`, readFileSync(join(dir, file))]);
    }

    const stackTraces = errorBodies
      .filter(([, text]) => /\bat .*\.js:\d+/.test(text))
      .map(([what, text]) => `stack trace in ${what}: ${text.slice(0, 200)}`);
    const shapeless = errorBodies
      .filter(([, text]) => {
        try {
          return typeof JSON.parse(text).error?.code !== 'string';
        } catch {
          return true;
        }
      })
      .map(([what, text]) => `error body without {"error":{"code"}} (${what}): ${text.slice(0, 200)}`);
    const hits = scanForCanaries([
      ['server stdout+stderr', Buffer.from(server.output())],
      ...errorBodies.map(([what, text]): [string, Buffer] => [`error body (${what})`, Buffer.from(text)]),
      ['/metrics', Buffer.from(metrics.text)],
      ['audit rows', Buffer.from(JSON.stringify(auditRows))],
      ...live,
      ...stopped,
    ]);
    // Metadata replies may name the subject to a caller allowed to see it, never a value.
    const valueHits = scanForCanaries(
      metadataReplies.map((text, i): [string, Buffer] => [`metadata reply ${i}`, Buffer.from(text)]),
    ).filter((hit) => !hit.includes(': subject '));
    console.log(
      `      scanned ${server.output().length} B of output, ${errorBodies.length} error bodies, ${metrics.text.length} B of metrics, ${auditRows.length} audit rows, ` +
        `${[...live, ...stopped].map(([f, b]) => `${f} ${b.length} B`).join(', ')}`,
    );
    // Everything at once, so one failure does not hide the others.
    const problems = [...unexpected.map((u) => `not refused with a 4xx: ${u}`), ...stackTraces, ...shapeless, ...hits, ...valueHits];
    expect(problems, problems.slice(0, 20).join('\n')).to.deep.equal([]);
  });
});
