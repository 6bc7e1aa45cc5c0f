import type Database from 'better-sqlite3';

const WAL_PURGE_RETRY_MS = 1_000;

/**
 * Copies every WAL frame into the database file and truncates the WAL, so deleted data (whose
 * database pages secure_delete zeroed) no longer survives in the WAL either. Another process
 * holding a read snapshot (a CLI command, an online backup) keeps the WAL from being truncated:
 * the attempt is repeated without blocking the event loop for up to the busy timeout, then the
 * answer goes out (the deletion itself is committed), a warning is reported and the purge keeps
 * being retried in the background.
 */
export class WalPurger {
  private inFlight?: Promise<boolean>;
  private retry?: NodeJS.Timeout;

  constructor(
    private readonly db: Database.Database,
    private readonly busyTimeoutMs: number,
    private readonly warn: (message: string) => void,
  ) {}

  /** Resolves true once the WAL is empty. */
  purge(): Promise<boolean> {
    this.inFlight ??= this.purgeWithin(this.busyTimeoutMs).finally(() => (this.inFlight = undefined));
    return this.inFlight.then((done) => {
      if (!done) this.retryLater();
      return done;
    });
  }

  stop(): void {
    clearTimeout(this.retry);
  }

  private async purgeWithin(waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      if (this.tryPurge()) return true;
      if (Date.now() >= deadline || !this.db.open) return false;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * One non-blocking TRUNCATE checkpoint (SQLite's busy handler would block the whole process while
   * it waits). A failure counts as not done: the deletion is committed either way.
   */
  private tryPurge(): boolean {
    if (!this.db.open) return false;
    try {
      this.db.pragma('busy_timeout = 0');
      const [result] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      return result.busy === 0;
    } catch {
      return false;
    } finally {
      if (this.db.open) this.db.pragma(`busy_timeout = ${Math.trunc(this.busyTimeoutMs)}`);
    }
  }

  private retryLater(): void {
    if (this.retry || !this.db.open) return;
    this.warn('deleted data is still in the WAL: another process holds a read snapshot; retrying the checkpoint');
    const again = () => {
      this.retry = undefined;
      if (!this.db.open || this.tryPurge()) return;
      this.retry = setTimeout(again, WAL_PURGE_RETRY_MS).unref();
    };
    this.retry = setTimeout(again, WAL_PURGE_RETRY_MS).unref();
  }
}
