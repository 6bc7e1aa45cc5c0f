/**
 * `npm run bench`: the vault's throughput and latency beside a baseline measured in the same run
 * (an express 5 + helmet JSON echo server), on this machine. Starts the real vault process on a
 * fresh data dir and drives both with autocannon. Reports a table on stdout and a JSON file.
 *
 *   npm run bench                     full run (about 3 minutes)
 *   npm run bench -- --quick          smoke run (seconds; numbers are not meaningful)
 *   npm run bench -- --records 1000000   also measure with that many stored records
 *   npm run bench -- --only "fixed"   only the scenarios whose name contains this (baselines always run)
 */
import autocannon from 'autocannon';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openLoop } from './open-loop';
import { luhnCheckDigit } from '../src/domain/data-types';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'bin', 'pii-vault.js');

interface Row {
  scenario: string;
  /** Requests answered 2xx. */
  requests: number;
  reqPerSec: number;
  valuesPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  rssMb: number;
  ratio?: number;
  p99Ratio?: number;
}

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, records: { type: 'string' }, out: { type: 'string' }, only: { type: 'string' } },
});
const QUICK = args.quick;
const DURATION = QUICK ? 1 : 10;
const CONNECTIONS = 50;

function randomPan(): string {
  const body = '4' + Array.from({ length: 14 }, () => String(Math.floor(Math.random() * 10))).join('');
  return body + luhnCheckDigit(body);
}

function start(command: string[], env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, command, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve({ proc, url: match[1] });
    });
    proc.once('exit', (code) => reject(new Error(`${command.join(' ')} exited with ${code}`)));
  });
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

async function post(url: string, key: string, body: object): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

interface Request {
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface Load {
  /** Base URL of the server. */
  url: string;
  /** The next request to send (a POST with a JSON body). */
  next: () => Request;
  connections?: number;
  /** A fixed overall request rate (open loop) instead of as fast as possible (closed loop). */
  rate?: number;
  valuesPerRequest?: number;
  /** Seconds; the run's duration by default. */
  duration?: number;
}

async function measure(scenario: string, pid: number, load: Load): Promise<Row> {
  if (load.rate) return measureOpenLoop(scenario, pid, { ...load, rate: load.rate });
  const connections = load.connections ?? CONNECTIONS;
  const result = await autocannon({
    url: load.url,
    connections,
    // A quick run sends a fixed number of requests and waits for every answer, so that on a slow or busy
    // machine no request is cut off mid-flight (and counted as an error) by the end of a one-second window.
    ...(QUICK ? { amount: connections } : { duration: load.duration ?? DURATION }),
    requests: [
      {
        setupRequest: (req: any) => {
          const next = load.next();
          return {
            ...req,
            method: 'POST',
            path: next.path,
            headers: { 'content-type': 'application/json', ...next.headers },
            body: next.body,
          };
        },
      },
    ],
  });
  const ok = result.requests.total - result.non2xx;
  const reqPerSec = Math.round(ok / (result.duration || load.duration || DURATION));
  return {
    scenario,
    requests: ok,
    reqPerSec,
    valuesPerSec: reqPerSec * (load.valuesPerRequest ?? 1),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
    rssMb: rssMb(pid),
  };
}

/** A fixed arrival rate; latency counts from when each request was due (see open-loop.ts). */
async function measureOpenLoop(scenario: string, pid: number, load: Load & { rate: number }): Promise<Row> {
  const result = await openLoop({ url: load.url, rate: load.rate, durationSeconds: load.duration ?? DURATION, next: load.next });
  return {
    scenario,
    requests: result.ok,
    reqPerSec: result.reqPerSec,
    valuesPerSec: result.reqPerSec * (load.valuesPerRequest ?? 1),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    rssMb: rssMb(pid),
  };
}

/** Loads `records` tokens; keeps a sample of 10,000 spread over the whole load for lookups. */
async function bulkLoad(url: string, key: string, records: number): Promise<{ seconds: number; perSec: number; sample: string[] }> {
  const started = Date.now();
  let loaded = 0;
  const sample: string[] = [];
  const keepEvery = Math.max(1, Math.floor(records / 10_000));
  const worker = async () => {
    while (loaded < records) {
      const n = Math.min(1000, records - loaded);
      loaded += n;
      const res = await post(`${url}/v1/tokenize`, key, {
        items: Array.from({ length: n }, () => ({ type: 'pan', value: randomPan(), format: 'random' })),
      });
      res.items.forEach((item: { token: string }, i: number) => {
        if (i % keepEvery === 0) sample.push(item.token);
      });
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  const seconds = (Date.now() - started) / 1000;
  return { seconds, perSec: Math.round(records / seconds), sample };
}

function table(rows: Row[]): string {
  const header = ['scenario', 'req/s', 'values/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'req/s ÷ echo', 'p99 ÷ echo'];
  const lines = rows.map((r) => [
    r.scenario,
    String(r.reqPerSec),
    String(r.valuesPerSec),
    String(r.p50),
    String(r.p99),
    String(r.errors),
    String(r.rssMb),
    r.ratio === undefined ? '' : r.ratio.toFixed(2),
    r.p99Ratio === undefined ? '' : r.p99Ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [fmt(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(fmt)].join('\n');
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'pii-vault-bench-'));
  const dir = join(root, 'vault');
  const children: ChildProcess[] = [];
  try {
    const init = spawnSync(process.execPath, [CLI, 'init', '--data-dir', dir, '--json'], { encoding: 'utf8' });
    if (init.status !== 0) throw new Error(init.stderr);
    const keys = JSON.parse(init.stdout).apiKeys;
    const configFile = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    Object.assign(config, { logLevel: 'error', rateLimits: { default: { ratePerSecond: 1_000_000, burst: 1_000_000 }, roles: {} } });
    writeFileSync(configFile, JSON.stringify(config));

    const echo = await start([join(ROOT, 'dist', 'scripts', 'echo-server.js')]);
    children.push(echo.proc);
    const vault = await start([CLI, 'serve', '--data-dir', dir, '--port', '0']);
    children.push(vault.proc);
    const vaultPid = vault.proc.pid!;

    const billing: Record<string, string> = { authorization: `Bearer ${keys.billing}` };
    const gateway: Record<string, string> = { authorization: `Bearer ${keys.gateway}` };
    const seed = await post(`${vault.url}/v1/tokenize`, keys.billing, {
      items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan() })),
    });
    const tokens: string[] = seed.body?.items ?? seed.items.map((i: { token: string }) => i.token);
    const someToken = () => tokens[Math.floor(Math.random() * tokens.length)];
    const oneItem = () => JSON.stringify({ items: [{ type: 'pan', value: randomPan() }] });
    const oneToken = () => JSON.stringify({ tokens: [someToken()], purpose: 'charge' });
    const batchItems = () =>
      JSON.stringify({ items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan(), format: 'random' })) });
    // Format-preserving PAN tokens are random digits: they land all over the token index.
    const batchPanFormat = () => JSON.stringify({ items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan() })) });
    const batchTokens = () => JSON.stringify({ tokens: Array.from({ length: 1000 }, someToken), purpose: 'charge' });

    const tokenize = (body: () => string) => () => ({ path: '/v1/tokenize', headers: billing, body: body() });
    const detokenize = (body: () => string) => () => ({ path: '/v1/detokenize', headers: gateway, body: body() });
    const batch = { connections: 4, valuesPerRequest: 1000 };

    const echoLoad: Load = {
      url: echo.url,
      next: () => ({ path: '/echo', headers: {}, body: JSON.stringify({ items: [{ type: 'pan', value: '4111111111111111' }] }) }),
    };
    // Warm both servers up (JIT, caches) before anything is recorded, so neither is measured cold.
    const warmup = QUICK ? 1 : 3;
    await measure('warm-up', echo.proc.pid!, { ...echoLoad, duration: warmup });
    await measure('warm-up', vaultPid, {
      url: vault.url,
      next: () => (Math.random() < 0.5 ? detokenize(oneToken)() : tokenize(oneItem)()),
      duration: warmup,
    });

    const echoRow = await measure('baseline: express+helmet echo', echo.proc.pid!, echoLoad);
    const echoFixedRow = await measure('baseline: echo at a fixed 2,000 req/s (open loop)', echo.proc.pid!, { ...echoLoad, rate: 2000 });
    const rows: Row[] = [echoRow, echoFixedRow];
    const vs = (row: Row) => ({ ...row, ratio: row.reqPerSec / echoRow.reqPerSec, p99Ratio: row.p99 / Math.max(echoRow.p99, 1) });
    // At a fixed rate only latency is compared, with the echo server at the same rate.
    const vsFixed = (row: Row) => ({ ...row, p99Ratio: row.p99 / Math.max(echoFixedRow.p99, 0.01) });
    // [scenario, load, compared with the echo baseline]
    const scenarios: Array<[string, Omit<Load, 'url'>, boolean]> = [
      ['tokenize, 1 value (durable)', { next: tokenize(oneItem) }, true],
      ['detokenize, 1 value', { next: detokenize(oneToken) }, true],
      ['tokenize, batch of 1,000 (random format)', { next: tokenize(batchItems), ...batch }, false],
      ['tokenize, batch of 1,000 (pan format, last 4 kept)', { next: tokenize(batchPanFormat), ...batch }, false],
      ['detokenize, batch of 1,000', { next: detokenize(batchTokens), ...batch }, false],
      ['mixed 80% detokenize / 20% tokenize', { next: () => (Math.random() < 0.8 ? detokenize(oneToken)() : tokenize(oneItem)()) }, true],
      ['tokenize at a fixed 2,000 req/s (open loop)', { next: tokenize(oneItem), rate: 2000 }, false],
      ['detokenize at a fixed 2,000 req/s (open loop)', { next: detokenize(oneToken), rate: 2000 }, false],
    ];
    for (const [scenario, load, compared] of scenarios) {
      if (args.only && !scenario.includes(args.only)) continue;
      const row = await measure(scenario, vaultPid, { url: vault.url, ...load });
      rows.push(load.rate ? vsFixed(row) : compared ? vs(row) : row);
    }

    const extra: Record<string, unknown> = {};
    if (args.records) {
      const target = Number(args.records);
      const before = statSync(join(dir, 'vault.db')).size;
      const { sample, ...load } = await bulkLoad(vault.url, keys.billing, target);
      const after = statSync(join(dir, 'vault.db')).size;
      extra.bulkLoad = { records: target, ...load, dbBytesPerRecord: Math.round((after - before) / target) };
      // Look up tokens from all over the load, not just the warm ones issued first.
      const anyLoaded = () => JSON.stringify({ tokens: [sample[Math.floor(Math.random() * sample.length)]], purpose: 'charge' });
      rows.push(vs(await measure(`detokenize, 1 value, at ${target} records`, vaultPid, { url: vault.url, next: detokenize(anyLoaded) })));
      rows.push(
        await measure(`tokenize, batch of 1,000 (random format), at ${target} records`, vaultPid, {
          url: vault.url,
          next: tokenize(batchItems),
          ...batch,
        }),
      );
    }

    const metrics = await (await fetch(`${vault.url}/metrics`)).text();
    const providerCalls = Number(/pii_vault_key_provider_calls_total (\d+)/.exec(metrics)?.[1] ?? NaN);
    const report = {
      date: new Date().toISOString(),
      quick: QUICK,
      durationSeconds: DURATION,
      connections: CONNECTIONS,
      rows,
      keyProviderCalls: providerCalls,
      ...extra,
    };
    process.stdout.write(
      `\n${table(rows)}\n\nKEK provider calls during the whole run: ${providerCalls} (one per data key version per process, not per request)\n`,
    );
    if (extra.bulkLoad) process.stdout.write(`bulk load: ${JSON.stringify(extra.bulkLoad)}\n`);
    const outDir = join(ROOT, 'bench-results');
    mkdirSync(outDir, { recursive: true });
    const outFile = args.out ?? join(outDir, `bench-${report.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(outFile, JSON.stringify(report, null, 2));
    process.stdout.write(`written to ${outFile}\n`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
