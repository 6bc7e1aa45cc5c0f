import { Client, Pool } from 'pg';
import type { KeyPurpose } from '../domain/keys';
import type { DataType } from '../domain/types';
import { POSTGRES_MIGRATIONS } from './postgres-migrations';
import { PoolSettings, durablePool } from './postgres-pool';
import { redactUrl, toStoreError } from './postgres-errors';
import { LookupBatch } from './postgres-lookup-batch';
import { TOKEN_COLUMNS } from './postgres-rows';
import { GroupCommit, RunOptions, query } from './postgres-group-commit';
import { INSERT_KEY, KEY_SELECT, Named, keyParams, planOps, runUntilChainHead } from './postgres-plan-ops';
import {
  AuditDbRow,
  DataKeyRow,
  JOB_COLUMNS,
  RECORDS_WITH_SUBJECT,
  JobRow,
  StoredTokenRow,
  SubjectDbRow,
  TokenRow,
  toAuditRow,
  toDataKey,
  toJob,
  toStoredRecord,
  toSubjectRow,
  toTokenRecord,
} from './rows';
import { appendAuditPlan, pruneAuditSegmentPlan } from './rules/audit';
import { changeDataKeyStatePlan, rotateDataKeyPlan } from './rules/data-keys';
import { inCountOrder, purgeExpiredPlan } from './rules/retention';
import { deleteTokenPlan, insertTokensPlan, replaceCiphertextsPlan } from './rules/tokens';
import { changeConsentPlan, eraseSubjectPlan } from './rules/subjects';
import type { Plan } from './transaction-plan';
import {
  AuditCheckpoint,
  AuditHead,
  AuditRow,
  AuditSegment,
  ConsentChange,
  DataKeyRecord,
  DataKeyState,
  ExpiredCount,
  InsertHooks,
  JobFields,
  JobRecord,
  PendingAudit,
  ReencryptedRecord,
  StoreUnavailableError,
  StoredRecord,
  SubjectConsent,
  SubjectRow,
  TokenRecord,
  VaultStore,
} from './vault-store';

export interface PostgresStoreOptions extends PoolSettings {
  idleInTransactionTimeoutMs: number;
}

/**
 * The columns of `tokens` by name, never `t.*`: these reads are prepared on each connection (see
 * Named), and a prepared statement whose `*` a later release's migration widens (a rolling upgrade
 * runs old instances on the new schema) fails with "cached plan must not change result type".
 */
const T_COLUMNS = TOKEN_COLUMNS.split(', ')
  .map((column) => `t.${column}`)
  .join(', ');

/**
 * The records of a list of tokens: one probe of the primary key per token. Not `token = ANY(list)`:
 * with statistics gone stale after a bulk load, the planner took that for a large part of the table
 * and scanned all of it in parallel (seen: 40 ms instead of 2 ms for 1,000 tokens, and the batch
 * detokenize rate fell to a tenth). OFFSET 0 keeps the lateral lookup from being flattened into
 * that same join.
 */
export const FIND_TOKENS_SQL = `SELECT ${T_COLUMNS}, s.handle AS subject_handle, s.purposes AS subject_purposes
  FROM unnest($1::text[]) AS wanted(token)
  CROSS JOIN LATERAL (SELECT * FROM tokens WHERE tokens.token = wanted.token OFFSET 0) t
  LEFT JOIN subjects s ON s.tenant = t.tenant AND s.subject_hash = t.subject_hash
  ORDER BY t.token, t.tenant`;

const FIND_TOKENS: Named = { name: 'pii-vault-find-tokens', text: FIND_TOKENS_SQL };

const FIND_DETERMINISTIC: Named = {
  name: 'pii-vault-find-deterministic',
  text: `SELECT ${T_COLUMNS} FROM tokens t JOIN unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS k(type, fingerprint, n)
      ON t.tenant = $1 AND t.type = k.type AND t.fingerprint = k.fingerprint
    ORDER BY k.n, t.format, t.preserve`,
};

/** Advisory lock key (per database) of schema migrations. */
const MIGRATION_LOCK = 0x70696976; // 'piiv'

/** Attempts of a write, or of a whole transaction, that hit a serialization failure or deadlock. */
const RETRY_ATTEMPTS = 5;
/** Distinct tokens one lookup statement asks for at most (a batch detokenize asks for up to 1,000). */
const MAX_LOOKUP_TOKENS = 2_000;
/**
 * Lookup statements in flight at once per instance; lookups arriving meanwhile go together in the
 * next. Unbounded, three instances' small turns split the same lookups over many statements; one
 * gave lower single-value detokenize on one instance than two in the runs made (single runs, noisy).
 */
const MAX_LOOKUPS_IN_FLIGHT = 2;
/** Writes sharing one transaction at most (each of them appends one audit row to its insert statement). */
const MAX_BATCH = 256;

/**
 * The store for several vault instances on one PostgreSQL database, with the semantics of
 * SqliteStore under READ COMMITTED and many writers. Every write that decides something runs the
 * same plan of src/store/rules/ as SqliteStore, over the primitives of postgres-plan-ops.ts, inside
 * a group-committed transaction (postgres-group-commit.ts); what differs is only how each lock of
 * the locking contract (vault-store.ts) is taken:
 * - insertTokens, replaceCiphertexts: each target data-key row `SELECT … FOR SHARE` (lockDataKey),
 *   must be active; held to commit, so a rotate/retire/destroy of it waits, and one that committed
 *   first is seen (StaleDataKeyError); a later write of the same group commit is answered from the
 *   row already held (see SharedKeyLocks). Token rows: `INSERT … ON CONFLICT DO NOTHING` (one
 *   multi-row statement for a batch's random tokens, see UpcomingInserts) waits for a
 *   concurrent inserter of the same token or deterministic identity, then reports which was taken;
 *   a lost identity race is a ConcurrentWriteError and the plan runs again (its hooks see the
 *   winner). Swaps are conditional UPDATEs (row lock, old version and binding re-checked).
 * - rotateDataKey, changeDataKeyState: the key family as `pg_advisory_xact_lock` on (tenant,
 *   purpose), then the key row (and the active row) `FOR UPDATE`; the record count that decides
 *   KeyInUseError is a later statement, so it sees every insert that held the row share-locked.
 * - deleteToken: `DELETE … RETURNING` locks the row; of two deletes one returns it.
 * - subject rows: claimed by `INSERT … ON CONFLICT DO UPDATE` (insertTokens, changeConsent: a row
 *   lock to commit; a concurrent first claim waits and then gets the winner's row, or inserts
 *   afresh if an erasure deleted it), or `SELECT … FOR UPDATE` (eraseSubject), before any record
 *   is touched; the erasure's record DELETE is a later statement, so it sees every record of a
 *   tokenize that committed first. A group commit first locks the existing rows of every subject
 *   its writes name, sorted, before anything else (see lockSubjects in postgres-group-commit.ts).
 * - purgeExpired: the expired rows `FOR UPDATE SKIP LOCKED`, deleted with `RETURNING`: two purges
 *   (or a purge and a tokenize replacing an expired record) never take the same row, and the counts
 *   are those of the rows deleted. acquireLease: one upsert, conditional under the row lock.
 * - every audit row: the plan is parked at lockAuditHead and resumed at the end of the group
 *   commit, after the counters, with the one-row `audit_chain_head` locked `FOR UPDATE` to commit;
 *   the batch's rows are chained from it and written with the new head in one statement, sent
 *   with COMMIT (pipelined), so the head is held for two round trips and the commit.
 *   pruneAuditSegment asks for the head first, so its checks run under that lock too.
 * - counters (record_counts, data_key_usage): deltas upserted at the end of the transaction, in
 *   sorted key order (no deadlock between batches); job progress: an atomic increment.
 * - insertDataKey, updateWrappedKey, insertJob, updateJob, saveAuditCheckpoint: one statement
 *   each (primary key, or a conditional UPDATE under its row lock). leaseJob: one conditional
 *   UPDATE of the job row, by the database's clock: a second claimer re-reads the first's row.
 * - reads: one statement on a pooled connection, no lock; the findTokens calls of one event-loop
 *   turn share one statement (LookupBatch), so each still reads one snapshot taken after it was called.
 * Deadlocks and serialization failures between group commits, and ConcurrentWriteError, are
 * retried inside the store (RETRY_ATTEMPTS), then StoreUnavailableError; a lost database is
 * StoreUnavailableError (503), and the pool reconnects by itself.
 */
export class PostgresStore implements VaultStore {
  /** Told about connections that fail while idle (never given values). */
  onWarning: (message: string) => void = () => undefined;
  private readonly writes: GroupCommit;
  private readonly lookups = new LookupBatch<StoredTokenRow>(
    (tokens) => this.read(FIND_TOKENS, [tokens]),
    MAX_LOOKUP_TOKENS,
    MAX_LOOKUPS_IN_FLIGHT,
  );

  private constructor(
    private readonly pool: Pool,
    readonly url: string,
  ) {
    this.writes = new GroupCommit(pool, { maxBatch: MAX_BATCH, maxConcurrentBatches: 2, retryAttempts: RETRY_ATTEMPTS });
    // An idle connection that dies (server restart, network cut) must not crash the process: the pool drops it.
    pool.on('error', (err) => this.onWarning(`an idle database connection failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
  }

  /** Connects, applies pending migrations (one instance at a time) and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = durablePool(options, 'pii-vault', {
      idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs,
      // Statements whose answers nothing waits for are sent behind one another (see GroupCommit).
      pipeline: true,
    });
    const store = new PostgresStore(pool, options.url);
    try {
      await store.migrate();
    } catch (err) {
      await pool.end().catch(() => undefined);
      const error = toStoreError(err);
      if (error instanceof StoreUnavailableError) {
        throw new StoreUnavailableError(`cannot open database ${redactUrl(options.url)}: ${error.message}`, err);
      }
      throw error;
    }
    return store;
  }

  /** Whether the database at `url` already holds a vault (its data keys table has a row). */
  static async holdsVault(url: string, connectTimeoutMs: number): Promise<boolean> {
    const client = new Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs });
    client.on('error', () => undefined); // reported by the failing query
    try {
      await client.connect();
      const { rows } = await client.query("SELECT to_regclass('data_keys') IS NOT NULL AS has");
      if (!rows[0].has) return false;
      return (await client.query('SELECT 1 FROM data_keys LIMIT 1')).rowCount === 1;
    } catch (err) {
      throw new StoreUnavailableError(`cannot open database ${redactUrl(url)}: ${(toStoreError(err) as Error).message}`, err);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Applies pending migrations, each in its own transaction, under a session advisory lock. */
  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    try {
      await query(client, 'SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await query(client, 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
        const applied = new Set((await query(client, 'SELECT version FROM schema_migrations')).rows.map((r) => r.version as number));
        for (const migration of POSTGRES_MIGRATIONS) {
          if (applied.has(migration.version)) continue;
          await query(client, 'BEGIN');
          try {
            await query(client, migration.sql);
            await query(client, 'INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [
              migration.version,
              new Date().toISOString(),
            ]);
            await query(client, 'COMMIT');
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          }
        }
      } finally {
        await query(client, 'SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      }
    } catch (err) {
      broken = err as Error;
      throw err;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  /** A read outside any write transaction: one statement on any pooled connection (a hot one prepared by name, see Named). */
  private async read<R>(sql: string | Named, params?: unknown[]): Promise<R[]> {
    return (await query(this.pool, sql, params)).rows as R[];
  }

  async ping(): Promise<void> {
    await this.read('SELECT 1');
  }

  async close(): Promise<void> {
    await this.writes.drained();
    await this.pool.end();
  }

  async activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined> {
    const [row] = await this.read<DataKeyRow>(`${KEY_SELECT} WHERE k.tenant = $1 AND k.purpose = $2 AND k.state = 'active'`, [
      tenant,
      purpose,
    ]);
    return row && toDataKey(row);
  }

  async dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined> {
    const [row] = await this.read<DataKeyRow>(`${KEY_SELECT} WHERE k.tenant = $1 AND k.purpose = $2 AND k.version = $3`, [
      tenant,
      purpose,
      version,
    ]);
    return row && toDataKey(row);
  }

  async insertDataKey(record: DataKeyRecord): Promise<boolean> {
    return this.writes.run(async (tx) => (await tx.count(INSERT_KEY, keyParams(record))) === 1);
  }

  async insertTokens(
    records: TokenRecord[],
    audit: PendingAudit,
    hooks: InsertHooks,
    consents?: readonly SubjectConsent[],
  ): Promise<string[]> {
    return (await this.transact(() => insertTokensPlan(records, audit, hooks, consents), { inserting: records, subjects: records })).tokens;
  }

  async findTokens(tokens: readonly string[]): Promise<Map<string, StoredRecord[]>> {
    const found = new Map<string, StoredRecord[]>();
    if (tokens.length === 0) return found;
    for (const [token, rows] of await this.lookups.find(tokens)) found.set(token, rows.map(toStoredRecord));
    return found;
  }

  async findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]> {
    if (keys.length === 0) return [];
    const rows = await this.read<TokenRow>(FIND_DETERMINISTIC, [tenant, keys.map((k) => k.type), keys.map((k) => k.fingerprint)]);
    return rows.map(toTokenRecord);
  }

  async deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean> {
    return this.transact(() => deleteTokenPlan(tenant, token, audit));
  }

  async subject(tenant: string, subjectHash: Buffer): Promise<SubjectRow | undefined> {
    const [row] = await this.read<SubjectDbRow>('SELECT handle, purposes FROM subjects WHERE tenant = $1 AND subject_hash = $2', [
      tenant,
      subjectHash,
    ]);
    return row && toSubjectRow(row);
  }

  async subjectRecords(tenant: string, subjectHash: Buffer, afterToken: string, limit: number): Promise<StoredRecord[]> {
    const rows = await this.read<StoredTokenRow>(
      `${RECORDS_WITH_SUBJECT} WHERE t.tenant = $1 AND t.subject_hash = $2 AND t.token > $3 ORDER BY t.token LIMIT $4`,
      [tenant, subjectHash, afterToken, limit],
    );
    return rows.map(toStoredRecord);
  }

  async auditRowsOfSubject(handle: Buffer, afterSeq: number, limit: number): Promise<AuditRow[]> {
    const rows = await this.read<AuditDbRow>(
      'SELECT a.* FROM audit_subjects x JOIN audit a ON a.seq = x.seq WHERE x.handle = $1 AND x.seq > $2 ORDER BY x.seq LIMIT $3',
      [handle, afterSeq, limit],
    );
    return rows.map(toAuditRow);
  }

  async changeConsent(tenant: string, subjectHash: Buffer, change: ConsentChange, now: number, audit: PendingAudit): Promise<SubjectRow> {
    return this.transact(() => changeConsentPlan(tenant, subjectHash, change, now, audit), { subjects: [{ tenant, subjectHash }] });
  }

  async eraseSubject(tenant: string, subjectHash: Buffer, audit: PendingAudit): Promise<{ records: number }> {
    return this.transact(() => eraseSubjectPlan(tenant, subjectHash, audit), { subjects: [{ tenant, subjectHash }] });
  }

  async listDataKeys(): Promise<DataKeyRecord[]> {
    return (await this.read<DataKeyRow>(`${KEY_SELECT} ORDER BY k.tenant, k.purpose, k.version`)).map(toDataKey);
  }

  async recordCountsByKey(): Promise<Map<string, number>> {
    const rows = await this.read<{ tenant: string; version: number; n: string }>(
      'SELECT tenant, key_version AS version, records AS n FROM record_counts WHERE records > 0',
    );
    return new Map(rows.map((r) => [`${r.tenant}/${r.version}`, Number(r.n)]));
  }

  async rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean> {
    return this.transact(() => rotateDataKeyPlan(next, audit, expectedActive));
  }

  async updateWrappedKey(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: { kekId: string; wrapped: Buffer },
    to: { kekId: string; wrapped: Buffer },
  ): Promise<boolean> {
    return this.writes.run(
      async (tx) =>
        (await tx.count(
          `UPDATE data_keys SET kek_id = $1, wrapped = $2
           WHERE tenant = $3 AND purpose = $4 AND version = $5 AND kek_id = $6 AND wrapped = $7 AND state <> 'destroyed'`,
          [to.kekId, to.wrapped, key.tenant, key.purpose, key.version, from.kekId, from.wrapped],
        )) === 1,
    );
  }

  async changeDataKeyState(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: DataKeyState,
    to: DataKeyState,
    audit: PendingAudit,
  ): Promise<boolean> {
    return this.transact(() => changeDataKeyStatePlan(key, from, to, audit));
  }

  async recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]> {
    const rows = await this.read<TokenRow>(
      'SELECT * FROM tokens WHERE tenant = $1 AND (key_version <> $2 OR binding < $3) AND token > $4 ORDER BY token LIMIT $5',
      [tenant, activeVersion, binding, afterToken, limit],
    );
    return rows.map(toTokenRecord);
  }

  async replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number> {
    return this.transact(() => replaceCiphertextsPlan(updates, jobId, failed, now));
  }

  async insertJob(job: JobRecord): Promise<void> {
    await this.writes.run((tx) =>
      tx.count(
        `INSERT INTO jobs (id, kind, tenants, state, total, done, failed, requested_by, created_at, updated_at, finished_at, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [
          job.id,
          job.kind,
          JSON.stringify(job.tenants),
          job.state,
          job.total,
          job.done,
          job.failed,
          job.requestedBy,
          job.createdAt,
          job.updatedAt,
          job.finishedAt,
          job.error,
        ],
      ),
    );
  }

  async job(id: string): Promise<JobRecord | undefined> {
    const [row] = await this.read<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return row && toJob(row);
  }

  async updateJob(id: string, fields: JobFields): Promise<void> {
    const keys = (Object.keys(fields) as (keyof JobFields)[]).filter((k) => k in JOB_COLUMNS);
    if (keys.length === 0) return;
    const sql = `UPDATE jobs SET ${keys.map((k, i) => `${JOB_COLUMNS[k]} = $${i + 2}`).join(', ')} WHERE id = $1`;
    await this.writes.run((tx) => tx.count(sql, [id, ...keys.map((k) => fields[k])]));
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return (await this.read<JobRow>("SELECT * FROM jobs WHERE state = 'running' ORDER BY created_at")).map(toJob);
  }

  async leaseJob(id: string, owner: string, leaseMs: number): Promise<boolean> {
    const now = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';
    return this.writes.run(
      async (tx) =>
        (await tx.count(
          `UPDATE jobs SET lease_owner = $2, lease_until = ${now} + $3
           WHERE id = $1 AND state = 'running' AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < ${now})`,
          [id, owner, leaseMs],
        )) === 1,
    );
  }

  async releaseJob(id: string, owner: string): Promise<void> {
    await this.writes.run((tx) =>
      tx.count('UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2', [id, owner]),
    );
  }

  async purgeExpired(now: number, limit: number, audit: PendingAudit): Promise<ExpiredCount[]> {
    return this.transact(() => purgeExpiredPlan(now, limit, audit));
  }

  async expiredCounts(now: number): Promise<ExpiredCount[]> {
    const rows = await this.read<{ tenant: string; type: ExpiredCount['type']; records: string }>(
      `SELECT tenant, type, count(*) AS records FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1
       GROUP BY tenant, type`,
      [now],
    );
    return inCountOrder(rows.map((r) => ({ tenant: r.tenant, type: r.type, records: Number(r.records) })));
  }

  async acquireLease(name: string, owner: string, leaseMs: number): Promise<boolean> {
    const now = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';
    return this.writes.run(
      async (tx) =>
        (await tx.count(
          `INSERT INTO leases (name, owner, lease_until) VALUES ($1, $2, ${now} + $3)
           ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
           WHERE leases.owner = excluded.owner OR leases.lease_until < ${now}`,
          [name, owner, leaseMs],
        )) === 1,
    );
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.writes.run((tx) => tx.count('DELETE FROM leases WHERE name = $1 AND owner = $2', [name, owner]));
  }

  async appendAudit(audit: PendingAudit): Promise<AuditRow> {
    return this.transact(() => appendAuditPlan(audit), { headOnly: true });
  }

  async auditRows(afterSeq: number, limit: number, tenants?: readonly string[]): Promise<AuditRow[]> {
    const rows = tenants
      ? await this.read<AuditDbRow>('SELECT * FROM audit WHERE tenant = ANY($3::text[]) AND seq > $1 ORDER BY seq LIMIT $2', [
          afterSeq,
          limit,
          [...new Set(tenants)],
        ])
      : await this.read<AuditDbRow>('SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSeq, limit]);
    return rows.map(toAuditRow);
  }

  async auditHead(): Promise<AuditHead | undefined> {
    const [row] = await this.read<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    return row && { seq: Number(row.seq), hash: row.hash };
  }

  async auditCheckpoint(): Promise<AuditCheckpoint | undefined> {
    const [row] = await this.read<{ seq: string; hash: Buffer; key_version: number; created_at: string; mac: Buffer }>(
      'SELECT seq, hash, key_version, created_at, mac FROM audit_checkpoint WHERE id = 1',
    );
    return row && { seq: Number(row.seq), hash: row.hash, keyVersion: row.key_version, createdAt: row.created_at, mac: row.mac };
  }

  async saveAuditCheckpoint(checkpoint: AuditCheckpoint): Promise<void> {
    await this.writes.run((tx) =>
      tx.count(
        `INSERT INTO audit_checkpoint (id, seq, hash, key_version, created_at, mac) VALUES (1, $1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, key_version = excluded.key_version,
           created_at = excluded.created_at, mac = excluded.mac`,
        [checkpoint.seq, checkpoint.hash, checkpoint.keyVersion, checkpoint.createdAt, checkpoint.mac],
      ),
    );
  }

  async auditSegments(): Promise<AuditSegment[]> {
    const rows = await this.read<{
      from_seq: string;
      through_seq: string;
      prev_hash: Buffer;
      head_hash: Buffer;
      archived_at: string;
      key_version: number;
      mac: Buffer;
    }>('SELECT * FROM audit_segments ORDER BY through_seq');
    return rows.map((r) => ({
      fromSeq: Number(r.from_seq),
      throughSeq: Number(r.through_seq),
      prevHash: r.prev_hash,
      headHash: r.head_hash,
      archivedAt: r.archived_at,
      keyVersion: r.key_version,
      mac: r.mac,
    }));
  }

  async pruneAuditSegment(segment: AuditSegment, audit: PendingAudit): Promise<boolean> {
    return this.transact(() => pruneAuditSegmentPlan(segment, audit));
  }

  /**
   * Runs a fresh plan of src/store/rules/ in the next group commit: its statements in the shared
   * transaction, its audit row chained at the end under the head lock. The records it is about to
   * insert, when given, are written together, with those of the transaction's other writes (see
   * UpcomingInserts); the subject rows it will lock are locked first, with the other writes', in
   * one order (see GroupCommit). A plan that only appends its audit row says so (`headOnly`), to
   * join a transaction already at the head. A plan that loses a race (ConcurrentWriteError,
   * serialization failure, deadlock) is run again.
   */
  private async transact<T>(plan: () => Plan<T>, options: RunOptions = {}): Promise<T> {
    return (await this.writes.run((tx) => runUntilChainHead(plan(), planOps(tx)), options)) as T;
  }
}
