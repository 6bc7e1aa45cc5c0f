import type { Pool, PoolClient } from 'pg';
import { AwaitsChainHead, ChainPhase, Named, SharedKeyLocks, WriteTx, upcomingInserts } from './postgres-plan-ops';
import type { UpcomingInserts } from './postgres-batch-insert';
import { breaksConnection, isRetryable as isRetryableError, toStoreError } from './postgres-errors';
import { subjectKeyId } from './subject-key-store';
import { ConcurrentWriteError } from './transaction-plan';
import { AuditUnavailableError, StoreUnavailableError, TokenRecord } from './vault-store';

/** A lost race a lock could not prevent: run the write (or the transaction) again. */
function isRetryable(err: unknown): boolean {
  return err instanceof ConcurrentWriteError || isRetryableError(err);
}

type Work<T> = (tx: WriteTx) => Promise<T>;

interface Op {
  work: Work<unknown>;
  /** Its only statement is at the chain head (an audit append): it may join a transaction already there (see Phases.latecomers). */
  headOnly: boolean;
  /** The records it is about to insert (see UpcomingInserts). */
  inserting: readonly TokenRecord[];
  /** The subject rows it will lock (see lockSubjects), by tenant and subject HMAC. */
  subjects: ReadonlyMap<string, Subject>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** A transaction's way through the chain head, as the scheduler sees it (see GroupCommit.schedule). */
interface Phases {
  atHead(): void;
  leftHead(): void;
  /**
   * Once the transaction holds the head: the head-only writes that arrived while it waited for it,
   * taken from the queue and added to the transaction's batch, so that they share its commit
   * instead of waiting for the next transaction of this instance to wait for the head in turn.
   */
  latecomers(): Op[];
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

interface Subject {
  tenant: string;
  subjectHash: Buffer;
}

export interface RunOptions {
  /** The write's plan asks for the chain head before any statement (an audit append, nothing else). */
  headOnly?: boolean;
  /** The records the write is about to insert: written with those of the transaction's other writes, in one statement. */
  inserting?: readonly TokenRecord[];
  /** The subject rows the write will claim or lock (entries without a subject are passed over). */
  subjects?: ReadonlyArray<{ tenant: string; subjectHash: Buffer | null }>;
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
 * (and so do those that arrive while it runs its writes' statements, and audit-only writes that
 * arrive while it waits for the chain head: see runTogether and Phases.latecomers), and every
 * caller is answered after the shared COMMIT (synchronous_commit=on: on disk). The records the
 * writes are about to insert go in one statement (see UpcomingInserts). The writes run one after
 * the other without savepoints; when one fails, the transaction is rolled back and the batch runs
 * again with each write in its own savepoint, so that one failing write does not undo the others.
 * The writes' hot spots are applied at the very end, in a fixed order, so that they are held only
 * for the commit and never while waiting for anything else: first the per-key counters (sorted),
 * then the audit chain head, locked FOR UPDATE, after which the batch's audit rows are chained and
 * inserted in one statement. That lock makes the audit log one chain across every instance:
 * appends are serialised. The counters and the lock are sent together, and so are the rows' insert
 * and COMMIT (pg pipeline mode), so the lock is held for one round trip (its read), the chaining in
 * this process, and the commit, whatever the batch size.
 */
export class GroupCommit {
  private pending: Op[] = [];
  private running = 0;
  /** Transactions in flight at the chain head: its lock asked for, their COMMIT not yet sent. */
  private atHead = 0;
  private scheduled = false;
  private idle: Array<() => void> = [];

  constructor(
    private readonly pool: Pool,
    private readonly options: GroupCommitOptions,
  ) {}

  run<T>(work: Work<T>, options: RunOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const { headOnly = false, inserting = [] } = options;
      const subjects = new Map<string, Subject>();
      for (const { tenant, subjectHash } of options.subjects ?? []) {
        if (subjectHash) subjects.set(subjectKeyId(tenant, subjectHash), { tenant, subjectHash });
      }
      this.pending.push({ work, headOnly, inserting, subjects, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Resolves once no transaction is in flight and none is waiting. */
  drained(): Promise<void> {
    if (this.running === 0 && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /**
   * A batch starts (up to maxConcurrentBatches in flight) unless a transaction of this instance is
   * at the chain head: waiting for its lock, or holding it until its COMMIT is sent. The next one
   * then takes the lock as soon as that commit releases it, with every write that arrived meanwhile;
   * starting it earlier would only queue at the lock behind it, with fewer writes, each transaction
   * with a commit of its own (seen with three instances: up to twice the CPU per write). A
   * transaction still running its writes' statements does not hold the next one back, so that
   * tokenize batches overlap their statements with the commit before.
   */
  private schedule(): void {
    if (this.scheduled || this.pending.length === 0 || !this.mayStart()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.mayStart()) return;
      const batch = this.pending.splice(0, this.options.maxBatch);
      if (batch.length === 0) return;
      this.running++;
      const phases = this.phases(batch);
      void this.commit(batch, phases).finally(() => {
        this.running--;
        phases.leftHead(); // schedules the next
        if (this.running === 0 && this.pending.length === 0) for (const done of this.idle.splice(0)) done();
      });
      // More than maxBatch were waiting: the rest may start a transaction of their own.
      this.schedule();
    });
  }

  /** Tells the scheduler when a transaction reaches the chain head, and when it leaves it (COMMIT sent, or the transaction over). */
  private phases(batch: Op[]): Phases {
    let phase: 'writes' | 'head' | 'left' = 'writes';
    return {
      latecomers: () => {
        const late: Op[] = [];
        const room = this.options.maxBatch - batch.length;
        this.pending = this.pending.filter((op) => !(op.headOnly && late.length < room && late.push(op)));
        batch.push(...late);
        return late;
      },
      atHead: () => {
        if (phase !== 'writes') return;
        phase = 'head';
        this.atHead++;
      },
      leftHead: () => {
        if (phase === 'head') this.atHead--;
        phase = 'left';
        this.schedule();
      },
    };
  }

  private mayStart(): boolean {
    return this.atHead === 0 && this.running < this.options.maxConcurrentBatches;
  }

  private async commit(batch: Op[], phases: Phases): Promise<void> {
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
          const outcomes = await this.transaction(client, batch, phases);
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
  private async transaction(client: PoolClient, batch: Op[], phases: Phases): Promise<Outcome[]> {
    // Pipelined with the first statement of the batch (for writes that only append an audit row, the head's lock), and
    // so are the subject locks. Were either to fail, so would every statement behind it; they are checked before
    // anything is chained or committed.
    // Writes that join later name only these subjects (see joiners).
    const subjects = new Map(batch.flatMap((op) => [...op.subjects]));
    const begun = settled(Promise.all([query(client, 'BEGIN'), lockSubjects(client, subjects)]));
    const outcomes = (await this.runTogether(client, batch, begun, subjects)) ?? (await this.runInSavepoints(client, batch, subjects));
    await finish(client, outcomes, begun, phases);
    return outcomes;
  }

  /**
   * The common case, every write of the batch succeeding, without a savepoint per write (two round
   * trips each). When one fails, the transaction is rolled back and a new one opened: a batch of one
   * reports its failure (a retryable one is thrown, for the whole transaction to run again), a
   * larger batch returns undefined, to run again write by write in savepoints.
   */
  private async runTogether(
    client: PoolClient,
    batch: Op[],
    begun: Settled<unknown>,
    lockedSubjects: ReadonlyMap<string, Subject>,
  ): Promise<Outcome[] | undefined> {
    const sharedKeys = new SharedKeyLocks();
    const upcoming = upcomingInserts(txOn(client, new Effects(), sharedKeys));
    const writes: Array<{ tx: WriteTx; effects: Effects }> = [];
    const join = (ops: Op[]) => {
      for (const op of ops) {
        const effects = new Effects();
        const tx = txOn(client, effects, sharedKeys, upcoming);
        upcoming.add(tx, op.inserting, op.headOnly);
        writes.push({ tx, effects });
      }
    };
    join(batch);
    const outcomes: Outcome[] = [];
    // The array grows while it is walked: writes that arrived while the batch's statements ran join at its end.
    for (const [i, op] of batch.entries()) {
      const { tx, effects } = writes[i];
      try {
        outcomes.push({ ok: true, value: await op.work(tx), effects });
        if (outcomes.length === batch.length) {
          const joining = this.joiners(this.options.maxBatch - batch.length, lockedSubjects);
          batch.push(...joining);
          join(joining);
        }
      } catch (err) {
        await begun.result();
        if (breaksConnection(err) || (batch.length === 1 && isRetryable(err))) throw err;
        await query(client, 'ROLLBACK');
        await query(client, 'BEGIN');
        return batch.length === 1 ? [{ ok: false, error: err }] : undefined;
      }
    }
    if (upcoming.unclaimed) throw new Error('records were written that no write of the transaction asked for');
    return outcomes;
  }

  /**
   * Writes waiting for a transaction, taken from the front of the queue to join one that is
   * running its writes' statements: at most `room`, and none from the first that would lock a
   * subject row the transaction did not lock at its start (see lockSubjects).
   */
  private joiners(room: number, lockedSubjects: ReadonlyMap<string, Subject>): Op[] {
    let n = 0;
    while (n < Math.min(room, this.pending.length) && [...this.pending[n].subjects.keys()].every((id) => lockedSubjects.has(id))) n++;
    return this.pending.splice(0, n);
  }

  /** Each write in its own savepoint, so that one failing write does not undo the others. */
  private async runInSavepoints(client: PoolClient, batch: Op[], subjects: ReadonlyMap<string, Subject>): Promise<Outcome[]> {
    await lockSubjects(client, subjects);
    const outcomes: Outcome[] = [];
    for (const op of batch) outcomes.push(await this.runInSavepoint(client, op));
    return outcomes;
  }

  private async runInSavepoint(client: PoolClient, op: Op): Promise<Outcome> {
    for (let attempt = 1; ; attempt++) {
      const effects = new Effects();
      await query(client, 'SAVEPOINT write');
      try {
        const tx = txOn(client, effects, undefined, upcomingInserts(txOn(client, effects)));
        tx.upcoming!.add(tx, op.inserting);
        const value = await op.work(tx);
        if (tx.upcoming!.unclaimed) throw new Error('records were written that the write did not ask for');
        await query(client, 'RELEASE SAVEPOINT write');
        return { ok: true, value, effects };
      } catch (err) {
        // A deadlock or serialization failure involves the locks of the writes before this one, which a rollback to the
        // savepoint keeps: run again here, the write would wait for the same transaction again. The whole transaction
        // is undone and run again instead (see commit).
        if (breaksConnection(err) || isRetryableError(err)) throw err;
        await query(client, 'ROLLBACK TO SAVEPOINT write');
        await query(client, 'RELEASE SAVEPOINT write');
        if (!(err instanceof ConcurrentWriteError)) return { ok: false, error: err };
        if (attempt >= this.options.retryAttempts) throw err;
        await backoff(attempt);
      }
    }
  }
}

/**
 * Ends the batch's transaction: the counters, then the chain head (the parked plans resume under
 * it), then COMMIT. The statements whose answers nothing waits for are pipelined behind one
 * another, so that the head is held for one round trip (its read) and the commit, whatever the
 * batch size.
 */
async function finish(client: PoolClient, outcomes: Outcome[], begun: Settled<unknown>, phases: Phases): Promise<void> {
  if (!outcomes.some((o) => o.ok)) {
    await begun.result();
    await query(client, 'COMMIT');
    return;
  }
  const shared = new Effects();
  for (const outcome of outcomes) if (outcome.ok) shared.merge(outcome.effects);
  const counted = settled(applyCounters(client, shared));
  const chain = await resumeAtChainHead(client, outcomes, begun, counted, phases);
  const flushed = settled(chain ? chain.flush().catch(auditFailure) : Promise.resolve());
  const committed = settled(query(client, 'COMMIT'));
  phases.leftHead();
  await flushed.result();
  await committed.result();
}

function txOn(client: PoolClient, effects: Effects, sharedKeys?: SharedKeyLocks, upcoming?: UpcomingInserts): WriteTx {
  const run = (sql: string | Named, params?: unknown[]) => {
    sharedKeys?.seen(sql);
    return query(client, sql, params);
  };
  return {
    sharedKeys,
    upcoming,
    rows: async <R>(sql: string | Named, params?: unknown[]) => (await run(sql, params)).rows as R[],
    count: async (sql, params) => (await run(sql, params)).rowCount ?? 0,
    addEncryptions: (tenant, version, n) => add(effects.encryptions, JSON.stringify([tenant, version]), n),
    addRecords: (tenant, version, n) => add(effects.records, JSON.stringify([tenant, version]), n),
  };
}

/** A statement on a client, or on any connection of a pool; driver failures become StoreUnavailableError (see toStoreError). */
export async function query(client: Pool | PoolClient, sql: string | Named, params?: unknown[]) {
  try {
    return await (typeof sql === 'string' ? client.query(sql, params) : client.query({ ...sql, values: params }));
  } catch (err) {
    throw toStoreError(err);
  }
}

const LOCK_SUBJECTS: Named = {
  name: 'pii-vault-lock-subjects',
  text: `SELECT 1 FROM subjects WHERE (tenant, subject_hash) IN (SELECT * FROM unnest($1::text[], $2::bytea[]))
    ORDER BY tenant, subject_hash FOR UPDATE OF subjects`,
};

/**
 * The existing subject rows the batch's writes will claim or lock (by subjectKeyId), locked `FOR
 * UPDATE` before anything else the transaction locks, in one order (by tenant and subject HMAC),
 * as one write claims its own subjects: each write would otherwise lock its subjects in its turn, after the
 * data-key rows and subjects of the writes before it, and two transactions whose writes came in
 * opposite orders would deadlock. A subject row that does not exist yet is created by its write's
 * claim, in its turn. No statement when the batch names no subject.
 */
async function lockSubjects(client: PoolClient, subjects: ReadonlyMap<string, Subject>): Promise<void> {
  if (subjects.size === 0) return;
  const named = [...subjects.values()];
  await query(client, LOCK_SUBJECTS, [named.map((s) => s.tenant), named.map((s) => s.subjectHash)]);
}

/** Counter rows in sorted order, so two transactions never wait for each other's in opposite orders. */
async function applyCounters(client: PoolClient, effects: Effects): Promise<void> {
  const columns = (counts: Map<string, number>) => {
    const entries = [...counts].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const keys = entries.map(([key]) => JSON.parse(key) as [string, number]);
    return [keys.map((k) => k[0]), keys.map((k) => k[1]), entries.map(([, n]) => n)];
  };
  const [encTenants, encVersions, encCounts] = columns(effects.encryptions);
  const [tenants, versions, counts] = columns(effects.records);
  // Both sent at once (pipelined), in this order.
  await Promise.all([
    encTenants.length ? query(client, ADD_ENCRYPTIONS, [encTenants, encVersions, encCounts]) : undefined,
    tenants.length ? query(client, ADD_RECORDS, [tenants, versions, counts]) : undefined,
  ]);
}

const ADD_ENCRYPTIONS: Named = {
  name: 'pii-vault-add-encryptions',
  text: `INSERT INTO data_key_usage (tenant, version, encryptions)
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) ORDER BY 1, 2
    ON CONFLICT (tenant, version) DO UPDATE SET encryptions = data_key_usage.encryptions + excluded.encryptions`,
};

const ADD_RECORDS: Named = {
  name: 'pii-vault-add-records',
  text: `INSERT INTO record_counts (tenant, key_version, records)
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) ORDER BY 1, 2
    ON CONFLICT (tenant, key_version) DO UPDATE SET records = record_counts.records + excluded.records`,
};

const LOCK_CHAIN_HEAD: Named = {
  name: 'pii-vault-lock-chain-head',
  text: 'SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE',
};

/**
 * Resumes, in batch order, the writes parked at the audit chain head (their plans reached
 * lockAuditHead), with the head row locked FOR UPDATE until COMMIT: one chain across every
 * instance. The lock is requested right behind the counters (pipelined: `counted` is their
 * outcome, checked first). Returns the chain with the rows still to write (see finish), or
 * undefined when no write was parked. A failure to lock or resume is AuditUnavailableError (the
 * whole transaction is undone), unless the database itself is gone.
 */
async function resumeAtChainHead(
  client: PoolClient,
  outcomes: Outcome[],
  begun: Settled<unknown>,
  counted: Settled<void>,
  phases: Phases,
): Promise<ChainPhase | undefined> {
  const parked = outcomes.filter((o): o is Outcome & { ok: true } => o.ok && o.value instanceof AwaitsChainHead);
  if (parked.length === 0) {
    await begun.result();
    await counted.result();
    return undefined;
  }
  phases.atHead();
  const locked = settled(query(client, LOCK_CHAIN_HEAD));
  await begun.result();
  await counted.result();
  try {
    const [head] = (await locked.result()).rows as Array<{ seq: string; hash: Buffer }>;
    if (!head) throw new Error('the audit chain head row is missing');
    for (const op of phases.latecomers()) {
      const outcome = await parkedAtHead(op);
      outcomes.push(outcome);
      if (outcome.ok) parked.push(outcome);
    }
    const chain = new ChainPhase(txOn(client, new Effects()), { seq: Number(head.seq), hash: head.hash });
    for (const outcome of parked) outcome.value = await (outcome.value as AwaitsChainHead<unknown>).resume(chain);
    return chain;
  } catch (err) {
    return auditFailure(err);
  }
}

/** A head-only write run up to the head, where it parks without a statement (one that tries a statement fails alone). */
async function parkedAtHead(op: Op): Promise<Outcome> {
  const noStatement = (): never => {
    throw new Error('a head-only write ran a statement before the chain head');
  };
  const tx: WriteTx = { rows: noStatement, count: noStatement, addEncryptions: noStatement, addRecords: noStatement };
  try {
    const value = await op.work(tx);
    if (!(value instanceof AwaitsChainHead)) throw new Error('a head-only write did not reach the chain head');
    return { ok: true, value, effects: new Effects() };
  } catch (error) {
    return { ok: false, error };
  }
}

function auditFailure(err: unknown): never {
  if (err instanceof StoreUnavailableError || isRetryable(err)) throw err;
  throw new AuditUnavailableError(err);
}

interface Settled<T> {
  /** The statement's outcome: its value, or its error thrown. */
  result(): Promise<T>;
}

/**
 * A statement sent now whose outcome is looked at later (pipelined behind the statements before
 * it). Its failure is kept for `result()`, never an unhandled rejection in between.
 */
function settled<T>(promise: Promise<T>): Settled<T> {
  const outcome = promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  return {
    result: async () => {
      const o = await outcome;
      if (!o.ok) throw o.error;
      return o.value;
    },
  };
}

/** A short randomised pause before running a transaction again, growing with the attempt. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.min(100, 2 ** attempt) * (0.5 + Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}
