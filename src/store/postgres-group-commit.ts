import type { Pool, PoolClient } from 'pg';
import { AwaitsChainHead, ChainPhase, WriteTx } from './postgres-plan-ops';
import { breaksConnection, isRetryable as isRetryableError, toStoreError } from './postgres-errors';
import { ConcurrentWriteError } from './transaction-plan';
import { AuditUnavailableError, StoreUnavailableError } from './vault-store';

/** A lost race a lock could not prevent: run the write (or the transaction) again. */
function isRetryable(err: unknown): boolean {
  return err instanceof ConcurrentWriteError || isRetryableError(err);
}

type Work<T> = (tx: WriteTx) => Promise<T>;

interface Op {
  work: Work<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type Outcome = { ok: true; value: unknown; effects: Effects } | { ok: false; error: unknown };

class Effects {
  readonly encryptions = new Map<string, number>();
  readonly records = new Map<string, number>();

  merge(other: Effects): void {
    for (const [key, n] of other.encryptions) add(this.encryptions, key, n);
    for (const [key, n] of other.records) add(this.records, key, n);
  }
}

function add(map: Map<string, number>, key: string, n: number): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

interface GroupCommitOptions {
  /** Writes per transaction at most. */
  maxBatch: number;
  /** Transactions in flight at once from this instance. */
  maxConcurrentBatches: number;
  /** Attempts of a write (or a whole transaction) that hit a serialization failure or deadlock. */
  retryAttempts: number;
}

/**
 * Group commit on PostgreSQL: the writes that arrive in one event-loop turn share one transaction
 * (each in its own savepoint, so one failing write does not undo the others), and every caller is
 * answered after the shared COMMIT (synchronous_commit=on: on disk). The writes' hot spots are
 * applied at the very end, in a fixed order, so that they are held only for the commit and never
 * while waiting for anything else: first the per-key counters (sorted), then the audit chain head,
 * locked FOR UPDATE, after which the batch's audit rows are chained and inserted in one statement.
 * That lock makes the audit log one chain across every instance: appends are serialised, and what
 * one transaction holds the lock for is two statements and its commit, whatever the batch size.
 */
export class GroupCommit {
  private pending: Op[] = [];
  private running = 0;
  private scheduled = false;
  private idle: Array<() => void> = [];

  constructor(
    private readonly pool: Pool,
    private readonly options: GroupCommitOptions,
  ) {}

  run<T>(work: Work<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Resolves once no transaction is in flight and none is waiting. */
  drained(): Promise<void> {
    if (this.running === 0 && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.pending.length === 0 || this.running >= this.options.maxConcurrentBatches) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.running >= this.options.maxConcurrentBatches) return;
      const batch = this.pending.splice(0, this.options.maxBatch);
      if (batch.length === 0) return;
      this.running++;
      void this.commit(batch).finally(() => {
        this.running--;
        this.schedule();
        if (this.running === 0 && this.pending.length === 0) for (const done of this.idle.splice(0)) done();
      });
    });
  }

  private async commit(batch: Op[]): Promise<void> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      const error = toStoreError(err);
      for (const op of batch) op.reject(error);
      return;
    }
    let broken: unknown;
    // A checked-out client has no error listener of the pool's: a connection lost between statements must not crash the process.
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const outcomes = await this.transaction(client, batch);
          batch.forEach((op, i) => {
            const outcome = outcomes[i];
            if (outcome.ok) op.resolve(outcome.value);
            else op.reject(outcome.error);
          });
          return;
        } catch (err) {
          await client.query('ROLLBACK').catch((rollbackError) => (broken = rollbackError));
          if (breaksConnection(err)) broken = err;
          if (!broken && isRetryable(err) && attempt < this.options.retryAttempts) {
            await backoff(attempt);
            continue;
          }
          const error = isRetryable(err) ? new StoreUnavailableError('database contention: retries exhausted', err) : err;
          for (const op of batch) op.reject(error);
          return;
        }
      }
    } finally {
      client.removeListener('error', onError);
      client.release(broken ? (broken as Error) : undefined);
    }
  }

  /** One attempt at the whole batch; throws (for the caller to roll back) when nothing of it may stand. */
  private async transaction(client: PoolClient, batch: Op[]): Promise<Outcome[]> {
    await query(client, 'BEGIN');
    const shared = new Effects();
    const outcomes: Outcome[] = [];
    for (const op of batch) {
      const outcome = batch.length === 1 ? await this.runAlone(client, op) : await this.runInSavepoint(client, op);
      if (outcome.ok) shared.merge(outcome.effects);
      outcomes.push(outcome);
    }
    if (outcomes.some((o) => o.ok)) {
      await applyCounters(client, shared);
      await resumeAtChainHead(client, outcomes);
    }
    await query(client, 'COMMIT');
    return outcomes;
  }

  /** A batch of one needs no savepoint: its failure rolls back the transaction (the caller's ROLLBACK). */
  private async runAlone(client: PoolClient, op: Op): Promise<Outcome> {
    const effects = new Effects();
    try {
      return { ok: true, value: await op.work(txOn(client, effects)), effects };
    } catch (err) {
      if (breaksConnection(err) || isRetryable(err)) throw err;
      await query(client, 'ROLLBACK');
      await query(client, 'BEGIN');
      return { ok: false, error: err };
    }
  }

  private async runInSavepoint(client: PoolClient, op: Op): Promise<Outcome> {
    for (let attempt = 1; ; attempt++) {
      const effects = new Effects();
      await query(client, 'SAVEPOINT write');
      try {
        const value = await op.work(txOn(client, effects));
        await query(client, 'RELEASE SAVEPOINT write');
        return { ok: true, value, effects };
      } catch (err) {
        if (breaksConnection(err)) throw err;
        await query(client, 'ROLLBACK TO SAVEPOINT write');
        await query(client, 'RELEASE SAVEPOINT write');
        if (!isRetryable(err)) return { ok: false, error: err };
        if (attempt >= this.options.retryAttempts) throw err;
        await backoff(attempt);
      }
    }
  }
}

function txOn(client: PoolClient, effects: Effects): WriteTx {
  return {
    rows: async <R>(sql: string, params?: unknown[]) => (await query(client, sql, params)).rows as R[],
    count: async (sql, params) => (await query(client, sql, params)).rowCount ?? 0,
    addEncryptions: (tenant, version, n) => add(effects.encryptions, JSON.stringify([tenant, version]), n),
    addRecords: (tenant, version, n) => add(effects.records, JSON.stringify([tenant, version]), n),
  };
}

/** A statement on a client; driver failures become StoreUnavailableError (see toStoreError). */
export async function query(client: PoolClient, sql: string, params?: unknown[]) {
  try {
    return await client.query(sql, params);
  } catch (err) {
    throw toStoreError(err);
  }
}

/** Counter rows in sorted order, so two transactions never wait for each other's in opposite orders. */
async function applyCounters(client: PoolClient, effects: Effects): Promise<void> {
  const columns = (counts: Map<string, number>) => {
    const entries = [...counts].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const keys = entries.map(([key]) => JSON.parse(key) as [string, number]);
    return [keys.map((k) => k[0]), keys.map((k) => k[1]), entries.map(([, n]) => n)];
  };
  const [encTenants, encVersions, encCounts] = columns(effects.encryptions);
  if (encTenants.length) {
    await query(
      client,
      `INSERT INTO data_key_usage (tenant, version, encryptions)
       SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) ORDER BY 1, 2
       ON CONFLICT (tenant, version) DO UPDATE SET encryptions = data_key_usage.encryptions + excluded.encryptions`,
      [encTenants, encVersions, encCounts],
    );
  }
  const [tenants, versions, counts] = columns(effects.records);
  if (tenants.length) {
    await query(
      client,
      `INSERT INTO record_counts (tenant, key_version, records)
       SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) ORDER BY 1, 2
       ON CONFLICT (tenant, key_version) DO UPDATE SET records = record_counts.records + excluded.records`,
      [tenants, versions, counts],
    );
  }
}

/**
 * Resumes, in batch order, the writes parked at the audit chain head (their plans reached
 * lockAuditHead), with the head row locked FOR UPDATE until COMMIT: one chain across every
 * instance, held for the rows' insert and the commit only. A failure to write the rows is
 * AuditUnavailableError (the whole transaction is undone), unless the database itself is gone.
 */
async function resumeAtChainHead(client: PoolClient, outcomes: Outcome[]): Promise<void> {
  const parked = outcomes.filter((o): o is Outcome & { ok: true } => o.ok && o.value instanceof AwaitsChainHead);
  if (parked.length === 0) return;
  try {
    const [head] = (await query(client, 'SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE')).rows as Array<{
      seq: string;
      hash: Buffer;
    }>;
    if (!head) throw new Error('the audit chain head row is missing');
    const chain = new ChainPhase(txOn(client, new Effects()), { seq: Number(head.seq), hash: head.hash });
    for (const outcome of parked) outcome.value = await (outcome.value as AwaitsChainHead<unknown>).resume(chain);
    await chain.flush();
  } catch (err) {
    if (err instanceof StoreUnavailableError || isRetryable(err)) throw err;
    throw new AuditUnavailableError(err);
  }
}

/** A short randomised pause before running a transaction again, growing with the attempt. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.min(100, 2 ** attempt) * (0.5 + Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}
