/**
 * The vaults a bench run measures, each started as real `pii-vault serve` processes on a fresh data
 * dir: the embedded SQLite vault (one process), or PostgreSQL vault instances sharing one data dir
 * (config, policy, master key) and one database created for the run and dropped at its end.
 */
import Database from 'better-sqlite3';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { createScratchDatabase } from './scratch-database';

const ROOT = join(__dirname, '..', '..');
export const CLI = join(ROOT, 'bin', 'pii-vault.js');

/** The PostgreSQL role the bench creates its database with (it needs CREATEDB). */
const ADMIN_URL =
  process.env.PII_VAULT_BENCH_DATABASE_URL || process.env.PII_VAULT_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

export interface Vault {
  store: 'sqlite' | 'postgres';
  /** One per instance, in start order. */
  urls: string[];
  pids: number[];
  apiKeys: Record<string, string>;
  /** PostgreSQL: the database created for the run (dropped by `close`). */
  database?: string;
  /** Sequence number of the newest audit row (every instance appends to the one chain). */
  auditSeq(): Promise<number>;
  /** PostgreSQL: transactions that wrote so far (the newest transaction id). */
  writeTransactions?(): Promise<number>;
  close(): Promise<void>;
}

/** Starts a process and resolves with the URL it prints as `listening on http://…`. */
export function startProcess(command: string[], env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; url: string }> {
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

function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

/** `init` on `dir`, with limits raised out of the way of the load and logs at `error`. */
function init(dir: string, env: NodeJS.ProcessEnv): Record<string, string> {
  const run = spawnSync(process.execPath, [CLI, 'init', '--data-dir', dir, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  if (run.status !== 0) throw new Error(run.stderr);
  const configFile = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  Object.assign(config, { logLevel: 'error', rateLimits: { default: { ratePerSecond: 1_000_000, burst: 1_000_000 }, roles: {} } });
  writeFileSync(configFile, JSON.stringify(config));
  return JSON.parse(run.stdout).apiKeys;
}

type Instance = { proc: ChildProcess; url: string };

async function startInstances(dir: string, count: number, env: NodeJS.ProcessEnv): Promise<Instance[]> {
  const started: Instance[] = [];
  try {
    // One at a time: each runs the schema check under the migration lock anyway.
    for (let i = 0; i < count; i++) started.push(await startProcess([CLI, 'serve', '--data-dir', dir, '--port', '0'], env));
  } catch (err) {
    await Promise.all(started.map((s) => stop(s.proc)));
    throw err;
  }
  return started;
}

export async function startSqliteVault(dir: string): Promise<Vault> {
  const apiKeys = init(dir, {});
  const instances = await startInstances(dir, 1, {});
  const reader = new Database(join(dir, 'vault.db'), { readonly: true, fileMustExist: true });
  const newest = reader.prepare('SELECT coalesce(max(seq), 0) AS seq FROM audit');
  return {
    store: 'sqlite',
    urls: instances.map((i) => i.url),
    pids: instances.map((i) => i.proc.pid!),
    apiKeys,
    auditSeq: async () => Number((newest.get() as { seq: number }).seq),
    close: async () => {
      await Promise.all(instances.map((i) => stop(i.proc)));
      reader.close();
    },
  };
}

/** A fresh PostgreSQL database for a bench run, and how to drop it. */
export function createBenchDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  return createScratchDatabase(ADMIN_URL, 'pii_vault_bench');
}

/** `instances` vault processes on one fresh PostgreSQL database, which `close` drops. */
export async function startPostgresVault(dir: string, instances: number): Promise<Vault> {
  const database = await createBenchDatabase();
  const env = { PII_VAULT_DATABASE_URL: database.url };
  const { name, drop } = database;
  let running: Instance[] = [];
  let reader: Client | undefined;
  try {
    const apiKeys = init(dir, env);
    running = await startInstances(dir, instances, env);
    const client = new Client({ connectionString: database.url });
    reader = client;
    await client.connect();
    return {
      store: 'postgres',
      database: name,
      urls: running.map((i) => i.url),
      pids: running.map((i) => i.proc.pid!),
      apiKeys,
      auditSeq: async () => Number((await client.query('SELECT seq FROM audit_chain_head WHERE id = 1')).rows[0].seq),
      // Every transaction that writes takes a transaction id; this query takes one too.
      writeTransactions: async () => Number((await client.query('SELECT pg_current_xact_id()::text AS xid')).rows[0].xid),
      close: async () => {
        await Promise.all(running.map((i) => stop(i.proc)));
        await client.end();
        await drop();
      },
    };
  } catch (err) {
    await Promise.all(running.map((i) => stop(i.proc)));
    await reader?.end().catch(() => undefined);
    await drop();
    throw err;
  }
}
