import type Database from 'better-sqlite3';

interface PendingWrite {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: the writes that arrive in one event-loop turn share one transaction, so one fsync
 * (synchronous=FULL) serves them all. Each runs in its own savepoint, so one failing write does not
 * undo the others; every caller is answered only after the shared commit is on disk.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  /** A transaction around `work`, or a savepoint when already in one (built once: building is costly). */
  readonly transactionally: Database.Transaction<(work: () => unknown) => unknown>;

  constructor(
    private readonly db: Database.Database,
    private readonly mapError: (err: unknown) => unknown,
  ) {
    this.transactionally = db.transaction((work: () => unknown) => work());
  }

  /** Queues synchronous work for the next shared transaction; resolves once it is committed. */
  write<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      // BEGIN IMMEDIATE: a deferred transaction that upgrades to a write lock held by another process
      // fails at once with SQLITE_BUSY; taking the lock first lets the busy timeout apply.
      this.transactionally.immediate(() => {
        for (const op of batch) {
          try {
            outcomes.push({ ok: true, value: this.transactionally(op.work) });
          } catch (error) {
            // Some failures (disk full, I/O) make SQLite roll back the whole transaction: then nothing of the group stands.
            if (!this.db.inTransaction) throw error;
            outcomes.push({ ok: false, error: this.mapError(error) });
          }
        }
      });
    } catch (err) {
      const error = this.mapError(err);
      for (const op of batch) op.reject(error);
      return;
    }
    batch.forEach((op, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) op.resolve(outcome.value);
      else op.reject(outcome.error);
    });
  }
}
