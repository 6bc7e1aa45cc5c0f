/**
 * `npm run bench:subject-keys`: what per-subject keys (crypto-shredding) cost on the tokenize path.
 * Two vaults in this process on fresh data dirs (SQLite, local master key), one with per-subject
 * keys for every type and one without, driven alternately with the same calls through the service
 * (no HTTP), so that the ratio compares like with like on a machine whose speed varies.
 *
 *   npm run bench:subject-keys                  3 rounds per scenario
 *   npm run bench:subject-keys -- --rounds 5 --concurrency 16
 *   npm run bench:subject-keys -- --quick       a smoke run (numbers are not meaningful)
 *   npm run bench:subject-keys -- --store postgres   both vaults on PostgreSQL databases created for
 *                                               the run (and dropped), the keys in one of their own
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createBenchDatabase } from './bench-vaults';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initDataDir } from '../src/app/init';
import { OpenedVault, openVault } from '../src/app/open-vault';
import { CONFIG_FILE, loadConfig } from '../src/config';
import { luhnCheckDigit } from '../src/domain/data-types';
import { createLogger } from '../src/logger';
import type { Caller } from '../src/service/context';
import type { TokenizeItem } from '../src/contract/schemas';
import { tmpdir } from 'node:os';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    quick: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite' },
  },
});
if (!['sqlite', 'postgres'].includes(args.store!)) throw new Error('--store must be sqlite or postgres');
const ROUNDS = args.quick ? 1 : Number(args.rounds);
const CONCURRENCY = Number(args.concurrency);
/** Values tokenized per scenario and round. */
const VALUES = args.quick ? 200 : 5_000;
const KNOWN_SUBJECTS = 200;

function randomPan(): string {
  const body = '4' + Array.from({ length: 14 }, () => String(Math.floor(Math.random() * 10))).join('');
  return body + luhnCheckDigit(body);
}

interface Scenario {
  name: string;
  batch: number;
  subject: () => string;
}

let created = 0;
/** A subject id never used before (letters only: a long digit run could look like card data to the input guards). */
const newSubject = () => `new_${(created++).toString(36).replace(/[0-9]/g, (d) => 'abcdefghij'[Number(d)])}`;
const known = Array.from(
  { length: KNOWN_SUBJECTS },
  (_, i) => `known_${String.fromCharCode(97 + (i % 26))}${String.fromCharCode(97 + Math.floor(i / 26))}`,
);
const SCENARIOS: Scenario[] = [
  { name: 'single value, new subject each', batch: 1, subject: newSubject },
  { name: 'single value, returning subject', batch: 1, subject: () => known[Math.floor(Math.random() * known.length)] },
  { name: 'batch of 100, new subject each', batch: 100, subject: newSubject },
  { name: 'batch of 100, returning subjects', batch: 100, subject: () => known[Math.floor(Math.random() * known.length)] },
];

interface BenchVault {
  opened: OpenedVault;
  caller: Caller;
  close(): Promise<void>;
}

async function openBenchVault(root: string, name: string, subjectKeys: boolean): Promise<BenchVault> {
  const dir = join(root, name);
  const databases = args.store === 'postgres' ? await Promise.all([createBenchDatabase(), createBenchDatabase()]) : [];
  const env: NodeJS.ProcessEnv = databases.length
    ? { PII_VAULT_DATABASE_URL: databases[0].url, PII_VAULT_SUBJECT_KEYS_DATABASE_URL: databases[1].url }
    : {};
  const { apiKeys } = await initDataDir(dir, { env });
  if (subjectKeys) {
    const file = join(dir, CONFIG_FILE);
    const config = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...config, subjectKeys: { enabled: [{ tenant: '*', types: ['*'] }] } }));
  }
  const opened = await openVault(loadConfig(dir, {}, env), { logger: createLogger('silent') });
  return {
    opened,
    caller: { principal: opened.vault.authenticate(apiKeys.billing)!, requestId: 'bench' },
    close: async () => {
      await opened.close();
      for (const database of databases) await database.drop();
    },
  };
}

/** Values per second: VALUES values in calls of `batch`, CONCURRENCY calls in flight. */
async function measure(target: BenchVault, scenario: Scenario): Promise<number> {
  const calls = Math.ceil(VALUES / scenario.batch);
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (next++ < calls) {
      const items: TokenizeItem[] = Array.from({ length: scenario.batch }, () => ({
        type: 'pan',
        value: randomPan(),
        subject: scenario.subject(),
      }));
      await target.opened.vault.tokenize(target.caller, { items });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (calls * scenario.batch) / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'pii-vault-bench-subject-keys-'));
  const off = await openBenchVault(root, 'off', false);
  const on = await openBenchVault(root, 'on', true);
  try {
    // Warm-up: keys created, returning subjects known to both vaults.
    for (const target of [off, on]) {
      await target.opened.vault.tokenize(target.caller, { items: known.map((subject) => ({ type: 'pan', value: randomPan(), subject })) });
    }
    const rows = [];
    for (const scenario of SCENARIOS) {
      const results = { off: [] as number[], on: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        // Alternating, so that a change in the machine's load hits both alike.
        results.off.push(await measure(off, scenario));
        results.on.push(await measure(on, scenario));
      }
      const [offRate, onRate] = [median(results.off), median(results.on)];
      rows.push({
        scenario: scenario.name,
        off: Math.round(offRate),
        on: Math.round(onRate),
        ratio: Number((onRate / offRate).toFixed(2)),
      });
    }
    console.log(
      `tokenize values/s on ${args.store}, per-subject keys off vs on (${CONCURRENCY} calls in flight, median of ${ROUNDS} alternating rounds):`,
    );
    console.table(rows);
  } finally {
    await off.close();
    await on.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
