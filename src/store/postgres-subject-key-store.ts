import { Pool } from 'pg';
import { isRetryable, redactUrl, toStoreError } from './postgres-errors';
import { PoolSettings, durablePool } from './postgres-pool';
import {
  MAX_GET_OR_CREATE_ATTEMPTS,
  SubjectKeyRecord,
  SubjectKeyRow,
  SubjectKeyStore,
  subjectKeyId,
  toSubjectKeyRecord,
} from './subject-key-store';
import { StoreUnavailableError } from './vault-store';

/** Advisory lock id under which concurrent starts create the table once ("subjkeys"). */
const SCHEMA_LOCK = 0x7375626a6b657973n;

const SCHEMA = `CREATE TABLE IF NOT EXISTS subject_keys (
  tenant TEXT NOT NULL,
  subject_hash BYTEA NOT NULL,
  wrap_version INTEGER NOT NULL,
  wrapped BYTEA NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant, subject_hash)
)`;

/**
 * The per-subject keys in a PostgreSQL database of their own (`subjectKeys.databaseUrl`, never the
 * vault's database: destroying a key must reach every backup of that one). Contract: SubjectKeyStore;
 * every statement runs on its own (autocommit), with synchronous_commit on.
 */
export class PostgresSubjectKeyStore implements SubjectKeyStore {
  onWarning: (message: string) => void = () => undefined;

  private constructor(private readonly pool: Pool) {
    pool.on('error', (err) =>
      this.onWarning(`an idle subject key store connection failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`),
    );
  }

  static async open(options: PoolSettings): Promise<PostgresSubjectKeyStore> {
    const pool = durablePool(options, 'pii-vault-subject-keys');
    const store = new PostgresSubjectKeyStore(pool);
    try {
      await store.createSchema();
    } catch (err) {
      await pool.end().catch(() => undefined);
      const error = toStoreError(err) as Error;
      throw new StoreUnavailableError(`cannot open the subject key store ${redactUrl(options.url)}: ${error.message}`, err);
    }
    return store;
  }

  private async createSchema(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
      await client.query(SCHEMA);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  async getOrCreate(candidates: readonly SubjectKeyRecord[]): Promise<SubjectKeyRecord[]> {
    const stored = new Map<string, SubjectKeyRecord>();
    for (let attempt = 1; attempt <= MAX_GET_OR_CREATE_ATTEMPTS; attempt++) {
      // In one order for every writer: two batches inserting overlapping keys wait for each other, never deadlock.
      const missing = candidates.filter((c) => !stored.has(subjectKeyId(c.tenant, c.subjectHash))).sort(byKey);
      if (missing.length === 0) return candidates.map((c) => stored.get(subjectKeyId(c.tenant, c.subjectHash))!);
      // Waits for concurrent inserters of the same keys; the read (a fresh snapshot) then sees the winners.
      const inserted = await this.query(
        `INSERT INTO subject_keys (tenant, subject_hash, wrap_version, wrapped, created_at)
         SELECT * FROM unnest($1::text[], $2::bytea[], $3::integer[], $4::bytea[], $5::bigint[]) ON CONFLICT DO NOTHING`,
        [
          missing.map((c) => c.tenant),
          missing.map((c) => c.subjectHash),
          missing.map((c) => c.wrapVersion),
          missing.map((c) => c.wrapped),
          missing.map((c) => c.createdAt),
        ],
      ).then(
        () => true,
        (err: unknown) => {
          // A deadlock or serialization failure all the same (another writer's order): the next attempt inserts again.
          if (isRetryable(err)) return false;
          throw err;
        },
      );
      if (!inserted) continue;
      for (const record of await this.getMany(missing)) {
        if (record) stored.set(subjectKeyId(record.tenant, record.subjectHash), record);
      }
    }
    throw new StoreUnavailableError(
      `subject keys not stored after ${MAX_GET_OR_CREATE_ATTEMPTS} attempts (destroyed while being created, or conflicting writers)`,
    );
  }

  async get(tenant: string, subjectHash: Buffer): Promise<SubjectKeyRecord | undefined> {
    const [row] = await this.query<SubjectKeyRow>('SELECT * FROM subject_keys WHERE tenant = $1 AND subject_hash = $2', [
      tenant,
      subjectHash,
    ]);
    return row && toSubjectKeyRecord(row);
  }

  async getMany(keys: ReadonlyArray<{ tenant: string; subjectHash: Buffer }>): Promise<Array<SubjectKeyRecord | undefined>> {
    if (keys.length === 0) return [];
    const rows = await this.query<SubjectKeyRow>(
      'SELECT k.* FROM subject_keys k JOIN unnest($1::text[], $2::bytea[]) AS w(tenant, subject_hash) USING (tenant, subject_hash)',
      [keys.map((k) => k.tenant), keys.map((k) => k.subjectHash)],
    );
    const stored = new Map(rows.map((row) => [subjectKeyId(row.tenant, row.subject_hash), toSubjectKeyRecord(row)]));
    return keys.map((k) => stored.get(subjectKeyId(k.tenant, k.subjectHash)));
  }

  /** How many keys are stored (migrate compares it with the source). */
  async count(): Promise<number> {
    const [row] = await this.query<{ n: string }>('SELECT count(*) AS n FROM subject_keys');
    return Number(row.n);
  }

  async destroy(tenant: string, subjectHash: Buffer): Promise<boolean> {
    const rows = await this.query('DELETE FROM subject_keys WHERE tenant = $1 AND subject_hash = $2 RETURNING 1', [tenant, subjectHash]);
    return rows.length === 1;
  }

  private async query<R>(sql: string, params?: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query(sql, params)).rows as R[];
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

/** The order every batch inserts in (tenant, then subject HMAC bytes). */
function byKey(a: SubjectKeyRecord, b: SubjectKeyRecord): number {
  return a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : Buffer.compare(a.subjectHash, b.subjectHash);
}
