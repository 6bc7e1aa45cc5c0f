import Database from 'better-sqlite3';
import { SQLITE_MIGRATIONS } from '../sqlite-migrations';
import { ConcurrentWriteError } from '../transaction-plan';
import { StoreUnavailableError } from '../vault-store';

/** Opens the vault database file (openDurable, with foreign keys) and applies pending migrations. */
export function openSqlite(file: string, busyTimeoutMs: number): Database.Database {
  let db: Database.Database;
  try {
    db = openDurable(file, busyTimeoutMs);
    db.pragma('foreign_keys = ON');
  } catch (err) {
    throw new StoreUnavailableError(`cannot open database ${file}: ${(err as Error).message}`, err);
  }
  migrate(db);
  return db;
}

/**
 * The file opened (created if need be) in WAL mode with synchronous=FULL (a commit is on disk
 * before it is acknowledged) and secure_delete (deleted rows are zeroed), waiting up to the busy timeout for another process's lock: the settings every vault file shares.
 * Closed again when a setting fails (e.g. the file is not a database).
 */
export function openDurable(file: string, busyTimeoutMs: number): Database.Database {
  const db = new Database(file);
  try {
    db.pragma(`busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('secure_delete = ON');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Applies pending migrations; each in its own transaction with its version record. */
function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
  for (const migration of SQLITE_MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, new Date().toISOString());
    })();
  }
}

/** Durability settings as the database reports them. */
export function durabilitySettings(db: Database.Database): { journalMode: string; synchronous: number } {
  return {
    journalMode: String(db.pragma('journal_mode', { simple: true })),
    synchronous: Number(db.pragma('synchronous', { simple: true })),
  };
}

/** An acknowledged write must be on disk: WAL with synchronous=FULL, or the vault does not start. */
export function requireDurable(db: Database.Database): void {
  const { journalMode, synchronous } = durabilitySettings(db);
  if (journalMode !== 'wal' || synchronous !== 2) {
    throw new StoreUnavailableError(
      `the database is in journal_mode=${journalMode}, synchronous=${synchronous}; the vault needs WAL with synchronous=FULL (2)`,
    );
  }
}

/**
 * SQLite's busy, full, I/O and corruption failures (and any use of a closed database) become
 * StoreUnavailableError (503); anything else is the caller's own failure and passes unchanged.
 * With one writer a plan never loses a race, so a ConcurrentWriteError is a conflict it cannot
 * retry away: unavailable too, never a 500.
 */
export function mapSqliteError(db: Database.Database, err: unknown): unknown {
  if (err instanceof ConcurrentWriteError) return new StoreUnavailableError(`database conflict (${err.message})`, err);
  const code = (err as { code?: string }).code ?? '';
  if (/^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code) || !db.open) {
    return new StoreUnavailableError(`database unavailable (${code || 'closed'})`, err);
  }
  return err;
}
