import Database from 'better-sqlite3';
import { SubjectKeyRecord, SubjectKeyRow, SubjectKeyStore, toSubjectKeyRecord } from '../subject-key-store';
import { StoreUnavailableError } from '../vault-store';
import { mapSqliteError, openDurable, requireDurable } from './connection';
import { WalPurger } from './wal-purge';

const SCHEMA = `CREATE TABLE IF NOT EXISTS subject_keys (
  tenant TEXT NOT NULL,
  subject_hash BLOB NOT NULL,
  wrap_version INTEGER NOT NULL,
  wrapped BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tenant, subject_hash)
) WITHOUT ROWID`;

/** The key file, created if need be, with the vault database's durability settings. */
function openKeyFile(file: string, busyTimeoutMs: number): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = openDurable(file, busyTimeoutMs);
    db.exec(SCHEMA);
    requireDurable(db);
    return db;
  } catch (err) {
    if (db?.open) db.close();
    if (err instanceof StoreUnavailableError) throw err;
    throw new StoreUnavailableError(`cannot open the subject key store ${file}: ${(err as Error).message}`, err);
  }
}

/**
 * The per-subject keys in a SQLite file of their own (default `<data-dir>/subject-keys.db`), with
 * the vault database's durability (WAL, synchronous=FULL) and secure_delete, so a destroyed key is
 * zeroed in the file and purged from the WAL. Contract: SubjectKeyStore.
 */
export class SqliteSubjectKeyStore implements SubjectKeyStore {
  onWarning: (message: string) => void = () => undefined;
  private readonly db: Database.Database;
  private readonly purger: WalPurger;
  private readonly statements;
  /** Inserts the candidates not stored yet and reads every one back, in one transaction (built once: building is costly). */
  private readonly insertThenRead;

  constructor(file: string, busyTimeoutMs: number) {
    this.db = openKeyFile(file, busyTimeoutMs);
    this.purger = new WalPurger(this.db, busyTimeoutMs, (message) => this.onWarning(`subject key store: ${message}`));
    const db = this.db;
    this.statements = {
      insert: db.prepare(
        `INSERT INTO subject_keys (tenant, subject_hash, wrap_version, wrapped, created_at)
         VALUES (@tenant, @subjectHash, @wrapVersion, @wrapped, @createdAt) ON CONFLICT DO NOTHING`,
      ),
      get: db.prepare('SELECT * FROM subject_keys WHERE tenant = ? AND subject_hash = ?'),
      delete: db.prepare('DELETE FROM subject_keys WHERE tenant = ? AND subject_hash = ?'),
    };
    this.insertThenRead = db.transaction((candidates: readonly SubjectKeyRecord[]) => {
      for (const candidate of candidates) this.statements.insert.run(candidate);
      return candidates.map((c) => this.read(c.tenant, c.subjectHash));
    });
  }

  ping(): Promise<void> {
    return this.run(() => void this.db.prepare('SELECT 1').get());
  }

  close(): Promise<void> {
    this.purger.stop();
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }

  getOrCreate(candidates: readonly SubjectKeyRecord[]): Promise<SubjectKeyRecord[]> {
    return this.run(() => {
      // BEGIN IMMEDIATE: under the write lock, the reads always see the rows.
      const stored = this.insertThenRead.immediate(candidates);
      if (stored.some((s) => !s)) throw new StoreUnavailableError('a subject key was not stored');
      return stored as SubjectKeyRecord[];
    });
  }

  get(tenant: string, subjectHash: Buffer): Promise<SubjectKeyRecord | undefined> {
    return this.run(() => this.read(tenant, subjectHash));
  }

  getMany(keys: ReadonlyArray<{ tenant: string; subjectHash: Buffer }>): Promise<Array<SubjectKeyRecord | undefined>> {
    return this.run(() => keys.map(({ tenant, subjectHash }) => this.read(tenant, subjectHash)));
  }

  async destroy(tenant: string, subjectHash: Buffer): Promise<boolean> {
    const deleted = await this.run(() => this.statements.delete.run(tenant, subjectHash).changes === 1);
    if (deleted) await this.purger.purge();
    return deleted;
  }

  private read(tenant: string, subjectHash: Buffer): SubjectKeyRecord | undefined {
    const row = this.statements.get.get(tenant, subjectHash) as SubjectKeyRow | undefined;
    return row && toSubjectKeyRecord(row);
  }

  private run<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (err) {
      return Promise.reject(mapSqliteError(this.db, err));
    }
  }
}
