/**
 * `npm run bench`: the vault's throughput and latency beside a baseline measured in the same run
 * (an express 5 + helmet JSON echo server), on this machine. Starts the real vault process on a
 * fresh data dir and drives both with autocannon. Reports a table on stdout and a JSON file.
 *
 *   npm run bench                     full run (about 3 minutes)
 *   npm run bench -- --quick          smoke run (seconds; numbers are not meaningful)
 *   npm run bench -- --records 1000000   also measure with that many stored records
 *   npm run bench -- --only "fixed"   only the scenarios whose name contains this (baselines always run)
 *   npm run bench -- --store postgres also PostgreSQL with 1, 2 and 3 vault instances on one database created
 *                                     for the run (and dropped), each scenario beside SQLite's in the same run;
 *                                     `--store both` is the same combined run, `--store sqlite` the default
 */
import autocannon from 'autocannon';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openLoop } from './open-loop';
import { Vault, startPostgresVault, startProcess, startSqliteVault } from './bench-vaults';
import { Row, comparisonTable, resultsTable, targetChecks } from './bench-report';
import { luhnCheckDigit } from '../src/domain/data-types';
import { cpuSeconds, pidsNamed } from './cpu-usage';

const ROOT = join(__dirname, '..', '..');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    records: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
    store: { type: 'string', default: 'sqlite' },
  },
});
if (!['sqlite', 'postgres', 'both'].includes(args.store!)) throw new Error('--store must be sqlite, postgres or both');
const WITH_POSTGRES = args.store !== 'sqlite';
/** PostgreSQL vault instance counts measured; the load is spread over the instances. */
const INSTANCE_COUNTS = [1, 2, 3];
const QUICK = args.quick;
const DURATION = QUICK ? 1 : 10;
const CONNECTIONS = 50;

function randomPan(): string {
  const body = '4' + Array.from({ length: 14 }, () => String(Math.floor(Math.random() * 10))).join('');
  return body + luhnCheckDigit(body);
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

/** What one scenario is measured on: the echo server, the SQLite vault or N PostgreSQL instances. */
interface Target {
  store?: 'sqlite' | 'postgres';
  instances: number;
  urls: string[];
  pids: number[];
  /** Newest audit seq, for the audit append rate; undefined for the echo server. */
  auditSeq?: () => Promise<number>;
  /** PostgreSQL: transactions that wrote so far. */
  writeTransactions?: () => Promise<number>;
}

interface Load {
  /** The next request to send (a POST with a JSON body). */
  next: () => Request;
  /** In all, spread over the target's instances. */
  connections?: number;
  /** A fixed overall request rate (open loop) instead of as fast as possible (closed loop). */
  rate?: number;
  valuesPerRequest?: number;
  /** Seconds; the run's duration by default. */
  duration?: number;
}

/** `total` split as evenly as possible into `parts` (earlier parts get the remainder). */
function spread(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** CPU seconds used so far by the target's processes, by each PostgreSQL process and by this load generator. */
function cpuNow(target: Target) {
  const self = process.cpuUsage();
  return {
    vault: target.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    postgres: new Map(pidsNamed('postgres').map((pid) => [pid, cpuSeconds(pid)])),
    load: (self.user + self.system) / 1e6,
  };
}

/** CPU milliseconds per request between two readings (a PostgreSQL backend that exited in between is not counted). */
function cpuPerRequest(before: ReturnType<typeof cpuNow>, after: ReturnType<typeof cpuNow>, requests: number) {
  let postgres = 0;
  for (const [pid, seconds] of after.postgres) postgres += seconds - (before.postgres.get(pid) ?? 0);
  const perRequest = (seconds: number) => (requests ? (1000 * seconds) / requests : 0);
  return { vault: perRequest(after.vault - before.vault), postgres: perRequest(postgres), load: perRequest(after.load - before.load) };
}

async function measure(scenario: string, target: Target, load: Load): Promise<Row> {
  const auditBefore = await target.auditSeq?.();
  const writesBefore = await target.writeTransactions?.();
  const cpuBefore = cpuNow(target);
  const started = performance.now();
  const row = load.rate
    ? await measureOpenLoop(scenario, target, { ...load, rate: load.rate })
    : await measureClosedLoop(scenario, target, load);
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = cpuNow(target);
  const auditAfter = await target.auditSeq?.();
  const writesAfter = await target.writeTransactions?.();
  return {
    ...row,
    cpuMsPerRequest: cpuPerRequest(cpuBefore, cpuAfter, row.requests),
    writeTransactionsPerRequest: writesBefore === undefined || !row.requests ? undefined : (writesAfter! - writesBefore - 1) / row.requests,
    store: target.store,
    instances: target.store ? target.instances : undefined,
    auditRows: auditBefore === undefined ? undefined : auditAfter! - auditBefore,
    auditPerSec: auditBefore === undefined ? undefined : Math.round((auditAfter! - auditBefore) / seconds),
    rssMb: Math.max(...target.pids.map(rssMb)),
  };
}

/**
 * As fast as answers come: one autocannon per instance, the connections spread over them, run at
 * once. Throughput is the sum over instances; p50 and p99 are the worst instance's.
 */
async function measureClosedLoop(scenario: string, target: Target, load: Load): Promise<Omit<Row, 'rssMb'>> {
  const perInstance = spread(load.connections ?? CONNECTIONS, target.urls.length);
  const results = await Promise.all(
    target.urls.map((url, i) =>
      autocannon({
        url,
        connections: perInstance[i],
        // A quick run sends a fixed number of requests and waits for every answer, so that on a slow or busy
        // machine no request is cut off mid-flight (and counted as an error) by the end of a one-second window.
        ...(QUICK ? { amount: perInstance[i] } : { duration: load.duration ?? DURATION }),
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
      }),
    ),
  );
  let ok = 0;
  let reqPerSec = 0;
  for (const result of results) {
    const answered = result.requests.total - result.non2xx;
    ok += answered;
    reqPerSec += answered / (result.duration || load.duration || DURATION);
  }
  return {
    scenario,
    requests: ok,
    reqPerSec: Math.round(reqPerSec),
    valuesPerSec: Math.round(reqPerSec) * (load.valuesPerRequest ?? 1),
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    errors: results.reduce((sum, r) => sum + r.errors + r.non2xx + r.timeouts, 0),
  };
}

/** A fixed overall arrival rate, requests sent to each instance in turn; latency counts from when each was due (see open-loop.ts). */
async function measureOpenLoop(scenario: string, target: Target, load: Load & { rate: number }): Promise<Omit<Row, 'rssMb'>> {
  const result = await openLoop({ urls: target.urls, rate: load.rate, durationSeconds: load.duration ?? DURATION, next: load.next });
  return {
    scenario,
    requests: result.ok,
    reqPerSec: result.reqPerSec,
    valuesPerSec: result.reqPerSec * (load.valuesPerRequest ?? 1),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
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

/** Issues 1,000 tokens on the vault (through its first instance), for the lookups to pick from. */
async function seedTokens(vault: Vault): Promise<string[]> {
  const seed = await post(`${vault.urls[0]}/v1/tokenize`, vault.apiKeys.billing, {
    items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan() })),
  });
  return seed.items.map((i: { token: string }) => i.token);
}

/** The request bodies of the scenarios, with the vault's API keys and seeded tokens. */
function requestsFor(vault: Vault, tokens: string[]) {
  const billing: Record<string, string> = { authorization: `Bearer ${vault.apiKeys.billing}` };
  const gateway: Record<string, string> = { authorization: `Bearer ${vault.apiKeys.gateway}` };
  const someToken = () => tokens[Math.floor(Math.random() * tokens.length)];
  const tokenize = (body: () => string) => () => ({ path: '/v1/tokenize', headers: billing, body: body() });
  const detokenize = (body: () => string) => () => ({ path: '/v1/detokenize', headers: gateway, body: body() });
  return {
    tokenize,
    detokenize,
    oneItem: () => JSON.stringify({ items: [{ type: 'pan', value: randomPan() }] }),
    oneToken: () => JSON.stringify({ tokens: [someToken()], purpose: 'charge' }),
    batchItems: () =>
      JSON.stringify({ items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan(), format: 'random' })) }),
    // Format-preserving PAN tokens are random digits: they land all over the token index.
    batchPanFormat: () => JSON.stringify({ items: Array.from({ length: 1000 }, () => ({ type: 'pan', value: randomPan() })) }),
    batchTokens: () => JSON.stringify({ tokens: Array.from({ length: 1000 }, someToken), purpose: 'charge' }),
  };
}

type Requests = ReturnType<typeof requestsFor>;

/** The SQLite vault, then PostgreSQL with each instance count (the first N of its instances). */
function targetsOf(vault: Vault): Target[] {
  const counts = vault.store === 'sqlite' ? [1] : INSTANCE_COUNTS;
  return counts.map((n) => ({
    store: vault.store,
    instances: n,
    urls: vault.urls.slice(0, n),
    pids: vault.pids.slice(0, n),
    auditSeq: vault.auditSeq,
    writeTransactions: vault.writeTransactions,
  }));
}

async function keyProviderCalls(url: string): Promise<number> {
  const metrics = await (await fetch(`${url}/metrics`)).text();
  return Number(/pii_vault_key_provider_calls_total (\d+)/.exec(metrics)?.[1] ?? NaN);
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'pii-vault-bench-'));
  const vaults: Vault[] = [];
  const echoProcs: Array<{ kill(signal: NodeJS.Signals): boolean }> = [];
  try {
    const echo = await startProcess([join(ROOT, 'dist', 'scripts', 'echo-server.js')]);
    echoProcs.push(echo.proc);
    const sqliteDir = join(root, 'sqlite');
    vaults.push(await startSqliteVault(sqliteDir));
    if (WITH_POSTGRES) vaults.push(await startPostgresVault(join(root, 'postgres'), Math.max(...INSTANCE_COUNTS)));
    const subjects: Array<{ vault: Vault; requests: Requests; targets: Target[] }> = [];
    for (const vault of vaults) subjects.push({ vault, requests: requestsFor(vault, await seedTokens(vault)), targets: targetsOf(vault) });

    const echoTarget: Target = { instances: 1, urls: [echo.url], pids: [echo.proc.pid!] };
    const echoLoad: Load = {
      next: () => ({ path: '/echo', headers: {}, body: JSON.stringify({ items: [{ type: 'pan', value: '4111111111111111' }] }) }),
    };
    // Warm every server up (JIT, caches, connection pools) before anything is recorded, so none is measured cold.
    const warmup = QUICK ? 1 : 3;
    await measure('warm-up', echoTarget, { ...echoLoad, duration: warmup });
    for (const { requests: r, targets } of subjects) {
      await measure('warm-up', targets[targets.length - 1], {
        next: () => (Math.random() < 0.5 ? r.detokenize(r.oneToken)() : r.tokenize(r.oneItem)()),
        duration: warmup,
      });
    }

    const echoRow = await measure('baseline: express+helmet echo', echoTarget, echoLoad);
    const echoFixedRow = await measure('baseline: echo at a fixed 2,000 req/s (open loop)', echoTarget, { ...echoLoad, rate: 2000 });
    const rows: Row[] = [echoRow, { ...echoFixedRow, rate: 2000 }];
    if (WITH_POSTGRES) {
      // What the machine gives a stateless server spread over as many processes as the largest PostgreSQL row, the same clients spread over them.
      const more = await Promise.all(
        Array.from({ length: Math.max(...INSTANCE_COUNTS) - 1 }, () => startProcess([join(ROOT, 'dist', 'scripts', 'echo-server.js')])),
      );
      echoProcs.push(...more.map((m) => m.proc));
      const spreadEcho: Target = {
        instances: more.length + 1,
        urls: [echo.url, ...more.map((m) => m.url)],
        pids: [echo.proc.pid!, ...more.map((m) => m.proc.pid!)],
      };
      await measure('warm-up', spreadEcho, { ...echoLoad, duration: warmup });
      rows.push(await measure(`baseline: echo spread over ${spreadEcho.instances} processes`, spreadEcho, echoLoad));
    }
    const vs = (row: Row) => ({ ...row, ratio: row.reqPerSec / echoRow.reqPerSec, p99Ratio: row.p99 / Math.max(echoRow.p99, 1) });
    // At a fixed rate only latency is compared, with the echo server at the same rate.
    const vsFixed = (row: Row) => ({ ...row, p99Ratio: row.p99 / Math.max(echoFixedRow.p99, 0.01) });
    const batch = { connections: 4, valuesPerRequest: 1000 };
    // [scenario, load on a vault, compared with the echo baseline]
    const scenarios: Array<[string, (r: Requests) => Load, boolean]> = [
      ['tokenize, 1 value (durable)', (r) => ({ next: r.tokenize(r.oneItem) }), true],
      ['detokenize, 1 value', (r) => ({ next: r.detokenize(r.oneToken) }), true],
      ['tokenize, batch of 1,000 (random format)', (r) => ({ next: r.tokenize(r.batchItems), ...batch }), false],
      ['tokenize, batch of 1,000 (pan format, last 4 kept)', (r) => ({ next: r.tokenize(r.batchPanFormat), ...batch }), false],
      ['detokenize, batch of 1,000', (r) => ({ next: r.detokenize(r.batchTokens), ...batch }), false],
      [
        'mixed 80% detokenize / 20% tokenize',
        (r) => ({ next: () => (Math.random() < 0.8 ? r.detokenize(r.oneToken)() : r.tokenize(r.oneItem)()) }),
        true,
      ],
      ['tokenize at a fixed 2,000 req/s (open loop)', (r) => ({ next: r.tokenize(r.oneItem), rate: 2000 }), false],
      ['detokenize at a fixed 2,000 req/s (open loop)', (r) => ({ next: r.detokenize(r.oneToken), rate: 2000 }), false],
    ];
    // Each scenario on every store and instance count in turn, so that a change in the shared machine's
    // load between scenarios does not favour one store.
    for (const [scenario, loadOf, compared] of scenarios) {
      if (args.only && !scenario.includes(args.only)) continue;
      for (const { requests, targets } of subjects) {
        for (const target of targets) {
          const load = loadOf(requests);
          const row = { ...(await measure(scenario, target, load)), rate: load.rate };
          rows.push(load.rate ? vsFixed(row) : compared ? vs(row) : row);
        }
      }
    }

    const extra: Record<string, unknown> = {};
    if (args.records) {
      // On the SQLite vault only.
      const [{ vault, requests: r, targets }] = subjects;
      const target = Number(args.records);
      const before = statSync(join(sqliteDir, 'vault.db')).size;
      const { sample, ...load } = await bulkLoad(vault.urls[0], vault.apiKeys.billing, target);
      const after = statSync(join(sqliteDir, 'vault.db')).size;
      extra.bulkLoad = { records: target, ...load, dbBytesPerRecord: Math.round((after - before) / target) };
      // Look up tokens from all over the load, not just the warm ones issued first.
      const anyLoaded = () => JSON.stringify({ tokens: [sample[Math.floor(Math.random() * sample.length)]], purpose: 'charge' });
      rows.push(vs(await measure(`detokenize, 1 value, at ${target} records`, targets[0], { next: r.detokenize(anyLoaded) })));
      rows.push(
        await measure(`tokenize, batch of 1,000 (random format), at ${target} records`, targets[0], {
          next: r.tokenize(r.batchItems),
          ...batch,
        }),
      );
    }

    // Per process: each instance unwraps each data-key version once.
    const providerCalls = await Promise.all(vaults.flatMap((v) => v.urls.map(keyProviderCalls)));
    const checks = WITH_POSTGRES ? targetChecks(rows, INSTANCE_COUNTS) : [];
    const report = {
      date: new Date().toISOString(),
      quick: QUICK,
      store: args.store,
      durationSeconds: DURATION,
      connections: CONNECTIONS,
      loadAverage: loadavg(),
      postgresDatabase: vaults.find((v) => v.database)?.database,
      rows,
      targets: checks,
      keyProviderCalls: Math.max(...providerCalls),
      ...extra,
    };
    let out = `\n${resultsTable(rows)}\n`;
    if (WITH_POSTGRES) {
      out += `\nPostgreSQL beside SQLite (same run):\n\n${comparisonTable(rows, INSTANCE_COUNTS)}\n\n`;
      if (QUICK) out += '(a quick run: the figures, and so these checks, are not meaningful)\n';
      out += checks.map((c) => `${c.met ? 'met    ' : 'NOT MET'}  ${c.target}: ${c.result}`).join('\n') + '\n';
    }
    out += `\nKEK provider calls during the whole run: at most ${report.keyProviderCalls} per vault process (one per data key version per process, not per request)\n`;
    out += `load average (1, 5, 15 min) at the end: ${report.loadAverage.map((l) => l.toFixed(2)).join(', ')} on ${cpus().length} cores\n`;
    process.stdout.write(out);
    if (extra.bulkLoad) process.stdout.write(`bulk load: ${JSON.stringify(extra.bulkLoad)}\n`);
    const outDir = join(ROOT, 'bench-results');
    mkdirSync(outDir, { recursive: true });
    const outFile = args.out ?? join(outDir, `bench-${report.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(outFile, JSON.stringify(report, null, 2));
    process.stdout.write(`written to ${outFile}\n`);
  } finally {
    for (const proc of echoProcs) proc.kill('SIGTERM');
    await Promise.all(vaults.map((v) => v.close()));
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
