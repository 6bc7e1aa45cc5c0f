import { Client, Pool } from 'pg';
import type { KeyPurpose } from '../domain/keys';
import type { DataType } from '../domain/types';
import { POSTGRES_MIGRATIONS } from './postgres-migrations';
import { redactUrl, toStoreError } from './postgres-errors';
import { GroupCommit, RollBack, WriteTx, query } from './postgres-group-commit';
import {
  AuditDbRow,
  DataKeyRow,
  JobRow,
  TOKEN_COLUMNS,
  TokenRow,
  toAuditRow,
  toDataKey,
  toJob,
  toTokenRecord,
  tokenParams,
} from './postgres-rows';
import {
  AuditCheckpoint,
  AuditHead,
  AuditRow,
  AuditSegment,
  DataKeyRecord,
  DataKeyState,
  InsertHooks,
  JobRecord,
  KeyInUseError,
  MAX_TOKEN_ATTEMPTS,
  PendingAudit,
  ReencryptedRecord,
  StaleDataKeyError,
  StoreUnavailableError,
  TokenCollisionError,
  TokenRecord,
  VaultStore,
} from './vault-store';

export interface PostgresStoreOptions {
  url: string;
  /** Connections at most (the pool waits for a free one, up to connectTimeoutMs). */
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

/** Advisory lock keys (per database): schema migrations, and audit segment pruning. */
const MIGRATION_LOCK = 0x70696976; // 'piiv'
const PRUNE_LOCK = 0x70696977;

/** Attempts of a write, or of a whole transaction, that hit a serialization failure or deadlock. */
const RETRY_ATTEMPTS = 5;
/** Writes sharing one transaction at most (each of them appends one audit row to its insert statement). */
const MAX_BATCH = 256;

/** Data keys with their encryption counts (kept apart, in data_key_usage: see postgres-migrations). */
const KEY_SELECT = `SELECT k.tenant, k.purpose, k.version, k.state, k.kek_id, k.wrapped, k.created_at,
    k.encryptions + coalesce(u.encryptions, 0) AS encryptions
  FROM data_keys k LEFT JOIN data_key_usage u ON k.purpose = 'data' AND u.tenant = k.tenant AND u.version = k.version`;

const INSERT_KEY = `INSERT INTO data_keys (tenant, purpose, version, state, kek_id, wrapped, created_at, encryptions)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`;

const keyParams = (r: DataKeyRecord) => [r.tenant, r.purpose, r.version, r.state, r.kekId, r.wrapped, r.createdAt, r.encryptions];

/**
 * The store for several vault instances on one PostgreSQL database, with the semantics of
 * SqliteStore under READ COMMITTED and many writers:
 * - inserts and re-encryption lock their data-key row FOR SHARE and find it active, so a rotation,
 *   retirement or destruction (which lock it FOR UPDATE) waits for them, and they see its outcome;
 * - rotation and key state changes lock the key row FOR UPDATE and check (count) in the same transaction;
 * - check-then-insert races end at the unique indexes (ON CONFLICT DO NOTHING, then look again);
 * - the audit log is one chain, its head row locked by every appending transaction (GroupCommit);
 * - serialization failures and deadlocks are retried inside the store, a bounded number of times;
 * - a lost database is StoreUnavailableError (503), and the pool reconnects by itself.
 */
export class PostgresStore implements VaultStore {
  /** Told about connections that fail while idle (never given values). */
  onWarning: (message: string) => void = () => undefined;
  private readonly writes: GroupCommit;

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
    const pool = new Pool({
      connectionString: options.url,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
      statement_timeout: options.statementTimeoutMs,
      idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs,
      // A connection that goes silent (no RST) fails on the client side too, a little after the server would have.
      query_timeout: options.statementTimeoutMs + options.connectTimeoutMs,
      keepAlive: true,
      application_name: 'pii-vault',
      // An acknowledged write is on disk on the server, whatever the server's default.
      options: '-c synchronous_commit=on',
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

  /** A read outside any write transaction: one statement on any pooled connection. */
  private async read<R>(sql: string, params?: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query(sql, params)).rows as R[];
    } catch (err) {
      throw toStoreError(err);
    }
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

  async insertTokens(records: TokenRecord[], audit: PendingAudit, hooks: InsertHooks): Promise<string[]> {
    return this.writes.run(async (tx) => {
      const tenant = records[0]?.tenant;
      for (const version of new Set(records.map((r) => r.keyVersion))) await requireActive(tx, tenant, version);
      const outcome: InsertOutcome = { seals: 0, inserted: 0, replaced: [] };
      const tokens: string[] = new Array(records.length);
      // Deterministic records one at a time and in order (each may see the ones before it); the others in one statement.
      for (const [index, record] of records.entries()) {
        if (record.fingerprint) tokens[index] = await insertDeterministic(tx, record, index, hooks, outcome);
      }
      const random = records.flatMap((record, index) => (record.fingerprint ? [] : [{ index, record }]));
      await insertRandom(tx, random, tokens, hooks, outcome);
      if (records.length > 0) {
        tx.addEncryptions(tenant, records[0].keyVersion, outcome.seals);
        tx.addRecords(tenant, records[0].keyVersion, outcome.inserted);
      }
      audit.entry.tokens = tokens;
      if (outcome.replaced.length) audit.entry.reason = `replaced expired deterministic tokens: ${outcome.replaced.join(', ')}`;
      tx.appendAudit(audit);
      return tokens;
    });
  }

  async findTokens(tokens: readonly string[]): Promise<Map<string, TokenRecord[]>> {
    const found = new Map<string, TokenRecord[]>();
    if (tokens.length === 0) return found;
    const rows = await this.read<TokenRow>('SELECT * FROM tokens WHERE token = ANY($1::text[]) ORDER BY token, tenant', [
      [...new Set(tokens)],
    ]);
    for (const row of rows) {
      const list = found.get(row.token) ?? [];
      list.push(toTokenRecord(row));
      found.set(row.token, list);
    }
    return found;
  }

  async findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]> {
    if (keys.length === 0) return [];
    const rows = await this.read<TokenRow>(
      `SELECT t.* FROM tokens t JOIN unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS k(type, fingerprint, n)
         ON t.tenant = $1 AND t.type = k.type AND t.fingerprint = k.fingerprint
       ORDER BY k.n, t.format, t.preserve`,
      [tenant, keys.map((k) => k.type), keys.map((k) => k.fingerprint)],
    );
    return rows.map(toTokenRecord);
  }

  async deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean> {
    return this.writes.run(async (tx) => {
      const deleted = await deleteOfTenant(tx, tenant, token);
      if (deleted) tx.appendAudit(audit);
      return deleted;
    });
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
    return this.writes.run(async (tx) => {
      // Waits for inserts under the active key (FOR SHARE) and for a concurrent rotation; then reads what they left.
      const [active] = await tx.rows<{ version: number }>(
        "SELECT version FROM data_keys WHERE tenant = $1 AND purpose = $2 AND state = 'active' FOR UPDATE",
        [next.tenant, next.purpose],
      );
      const taken = await tx.rows('SELECT 1 FROM data_keys WHERE tenant = $1 AND purpose = $2 AND version = $3', [
        next.tenant,
        next.purpose,
        next.version,
      ]);
      if (taken.length > 0) return false;
      if (expectedActive !== undefined && active?.version !== expectedActive) return false;
      await tx.count("UPDATE data_keys SET state = 'decrypt-only' WHERE tenant = $1 AND purpose = $2 AND state = 'active'", [
        next.tenant,
        next.purpose,
      ]);
      // Another instance inserted this version (or an active key) meanwhile: undo the demotion.
      if ((await tx.count(INSERT_KEY, keyParams(next))) !== 1) throw new RollBack(false);
      tx.appendAudit(audit);
      return true;
    });
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
    return this.writes.run(async (tx) => {
      // Locked first: an insert or re-encryption under this key (FOR SHARE) commits before the count, or sees the new state.
      await tx.rows('SELECT 1 FROM data_keys WHERE tenant = $1 AND purpose = $2 AND version = $3 FOR UPDATE', [
        key.tenant,
        key.purpose,
        key.version,
      ]);
      if (key.purpose === 'data' && to !== 'decrypt-only') {
        const [{ n }] = await tx.rows<{ n: string }>('SELECT count(*) AS n FROM tokens WHERE tenant = $1 AND key_version = $2', [
          key.tenant,
          key.version,
        ]);
        if (Number(n) > 0) throw new KeyInUseError(Number(n));
      }
      const done =
        (await tx.count(
          `UPDATE data_keys SET state = $1, wrapped = CASE WHEN $1 = 'destroyed' THEN NULL ELSE wrapped END
           WHERE tenant = $2 AND purpose = $3 AND version = $4 AND state = $5`,
          [to, key.tenant, key.purpose, key.version, from],
        )) === 1;
      if (done) tx.appendAudit(audit);
      return done;
    });
  }

  async recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]> {
    const rows = await this.read<TokenRow>(
      'SELECT * FROM tokens WHERE tenant = $1 AND (key_version <> $2 OR binding <> $3) AND token > $4 ORDER BY token LIMIT $5',
      [tenant, activeVersion, binding, afterToken, limit],
    );
    return rows.map(toTokenRecord);
  }

  async replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number> {
    return this.writes.run(async (tx) => {
      const targets = new Map(updates.map((u) => [`${u.tenant}/${u.keyVersion}`, u]));
      for (const u of targets.values()) await requireActive(tx, u.tenant, u.keyVersion);
      let swapped = 0;
      if (updates.length > 0) {
        const column = <K extends keyof ReencryptedRecord>(key: K) => updates.map((u) => u[key]);
        const rows = await tx.rows<{ tenant: string; from_version: number; key_version: number; sealed: boolean }>(
          `UPDATE tokens t SET key_version = u.key_version, binding = u.binding, preserve = u.preserve, nonce = u.nonce,
             ciphertext = u.ciphertext, tag = u.tag, subject_sealed = u.subject_sealed
           FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[], $7::text[], $8::bytea[], $9::bytea[],
                       $10::bytea[], $11::bytea[])
             AS u(token, tenant, from_version, from_binding, key_version, binding, preserve, nonce, ciphertext, tag, subject_sealed)
           WHERE t.token = u.token AND t.tenant = u.tenant AND t.key_version = u.from_version AND t.binding = u.from_binding
           RETURNING t.tenant, u.from_version, t.key_version, u.subject_sealed IS NOT NULL AS sealed`,
          [
            column('token'),
            column('tenant'),
            column('fromVersion'),
            column('fromBinding'),
            column('keyVersion'),
            column('binding'),
            column('preserve'),
            column('nonce'),
            column('ciphertext'),
            column('tag'),
            column('subjectSealed'),
          ],
        );
        for (const row of rows) {
          tx.addEncryptions(row.tenant, row.key_version, row.sealed ? 2 : 1);
          tx.addRecords(row.tenant, row.from_version, -1);
          tx.addRecords(row.tenant, row.key_version, 1);
        }
        swapped = rows.length;
      }
      await tx.count('UPDATE jobs SET done = done + $1, failed = failed + $2, updated_at = $3 WHERE id = $4', [
        swapped,
        failed,
        now,
        jobId,
      ]);
      return swapped;
    });
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

  async updateJob(
    id: string,
    fields: Partial<Pick<JobRecord, 'state' | 'total' | 'done' | 'failed' | 'updatedAt' | 'finishedAt' | 'error'>>,
  ): Promise<void> {
    const columns: Record<string, string> = {
      state: 'state',
      total: 'total',
      done: 'done',
      failed: 'failed',
      updatedAt: 'updated_at',
      finishedAt: 'finished_at',
      error: 'error',
    };
    const keys = Object.keys(fields).filter((k) => k in columns);
    if (keys.length === 0) return;
    const sql = `UPDATE jobs SET ${keys.map((k, i) => `${columns[k]} = $${i + 2}`).join(', ')} WHERE id = $1`;
    await this.writes.run((tx) => tx.count(sql, [id, ...keys.map((k) => fields[k as keyof typeof fields])]));
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return (await this.read<JobRow>("SELECT * FROM jobs WHERE state = 'running' ORDER BY created_at")).map(toJob);
  }

  async appendAudit(audit: PendingAudit): Promise<AuditRow> {
    const slot = await this.writes.run(async (tx) => tx.appendAudit(audit));
    return slot.row!;
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
    return this.writes.run(async (tx) => {
      // One pruning at a time across instances: the second then sees the first's segment and refuses.
      await tx.rows('SELECT pg_advisory_xact_lock($1)', [PRUNE_LOCK]);
      const [last] = await tx.rows<{ seq: string }>('SELECT through_seq AS seq FROM audit_segments ORDER BY through_seq DESC LIMIT 1');
      if (segment.fromSeq !== Number(last?.seq ?? 0) + 1) return false;
      const [{ n }] = await tx.rows<{ n: string }>('SELECT count(*) AS n FROM audit WHERE seq BETWEEN $1 AND $2', [
        segment.fromSeq,
        segment.throughSeq,
      ]);
      if (Number(n) !== segment.throughSeq - segment.fromSeq + 1) return false;
      const link = async (seq: number) =>
        (await tx.rows<{ prev_hash: Buffer; hash: Buffer }>('SELECT prev_hash, hash FROM audit WHERE seq = $1', [seq]))[0];
      const first = await link(segment.fromSeq);
      const end = await link(segment.throughSeq);
      if (!first.prev_hash.equals(segment.prevHash) || !end.hash.equals(segment.headHash)) return false;
      await tx.count('DELETE FROM audit WHERE seq BETWEEN $1 AND $2', [segment.fromSeq, segment.throughSeq]);
      await tx.count(
        `INSERT INTO audit_segments (through_seq, from_seq, prev_hash, head_hash, archived_at, key_version, mac)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [segment.throughSeq, segment.fromSeq, segment.prevHash, segment.headHash, segment.archivedAt, segment.keyVersion, segment.mac],
      );
      tx.appendAudit(audit);
      return true;
    });
  }
}

interface InsertOutcome {
  seals: number;
  inserted: number;
  replaced: string[];
}

/** Inside a write: the data key version must be active, and stays so (FOR SHARE) until the commit. */
async function requireActive(tx: WriteTx, tenant: string, version: number): Promise<void> {
  const [key] = await tx.rows<{ state: string }>(
    "SELECT state FROM data_keys WHERE tenant = $1 AND purpose = 'data' AND version = $2 FOR SHARE",
    [tenant, version],
  );
  if (key?.state !== 'active') throw new StaleDataKeyError();
}

async function deleteOfTenant(tx: WriteTx, tenant: string, token: string): Promise<boolean> {
  const [row] = await tx.rows<{ key_version: number }>('DELETE FROM tokens WHERE token = $1 AND tenant = $2 RETURNING key_version', [
    token,
    tenant,
  ]);
  if (row) tx.addRecords(tenant, row.key_version, -1);
  return row !== undefined;
}

const INSERT_TOKEN = `INSERT INTO tokens (${TOKEN_COLUMNS})
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`;

/**
 * One deterministic record: the hook decides about the stored records of its fingerprint. An insert
 * that writes nothing lost either its token (a collision: retokenize) or its identity to another
 * instance's concurrent insert (the unique index waited for that commit): then the next lookup
 * shows the winner to the hook, which reuses it (or refuses, and the caller looks again).
 */
async function insertDeterministic(
  tx: WriteTx,
  first: TokenRecord,
  index: number,
  hooks: InsertHooks,
  outcome: InsertOutcome,
): Promise<string> {
  let record = first;
  for (let attempt = 0; attempt < MAX_TOKEN_ATTEMPTS; attempt++) {
    const existing = (
      await tx.rows<TokenRow>('SELECT * FROM tokens WHERE tenant = $1 AND type = $2 AND fingerprint = $3 ORDER BY format, preserve', [
        record.tenant,
        record.type,
        record.fingerprint,
      ])
    ).map(toTokenRecord);
    if (existing.length > 0) {
      const decision = hooks.resolveExisting(index, existing);
      if (typeof decision === 'object' && 'reuse' in decision) return decision.reuse;
      if (typeof decision === 'object') {
        for (const token of decision.replace) await deleteOfTenant(tx, record.tenant, token);
        outcome.replaced.push(...decision.replace);
      }
    }
    outcome.seals += record.subjectSealed ? 2 : 1;
    if ((await tx.count(INSERT_TOKEN, tokenParams(record))) === 1) {
      outcome.inserted++;
      return record.token;
    }
    const identityTaken = await tx.rows(
      'SELECT 1 FROM tokens WHERE tenant = $1 AND type = $2 AND fingerprint = $3 AND format = $4 AND preserve = $5',
      [record.tenant, record.type, record.fingerprint, record.format, record.preserve],
    );
    if (identityTaken.length === 0) record = hooks.retokenize(index);
  }
  throw new TokenCollisionError();
}

/** Records without a fingerprint, in one multi-row insert per attempt; the ones whose token was taken get new tokens. */
async function insertRandom(
  tx: WriteTx,
  todo: Array<{ index: number; record: TokenRecord }>,
  tokens: string[],
  hooks: InsertHooks,
  outcome: InsertOutcome,
): Promise<void> {
  for (let attempt = 0; todo.length > 0; attempt++) {
    if (attempt >= MAX_TOKEN_ATTEMPTS) throw new TokenCollisionError();
    // Two records of the batch with one token: the later one waits for the next attempt.
    const seen = new Set<string>();
    const sent = todo.filter(({ record }) => !seen.has(record.token) && seen.add(record.token));
    for (const { record } of todo) outcome.seals += record.subjectSealed ? 2 : 1;
    const params = sent.map(({ record }) => tokenParams(record));
    const column = (i: number) => params.map((p) => p[i]);
    const inserted = new Set(
      (
        await tx.rows<{ token: string }>(
          `INSERT INTO tokens (${TOKEN_COLUMNS})
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::bytea[],
                                $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[], $13::bytea[], $14::text[], $15::bigint[], $16::bigint[])
           ON CONFLICT DO NOTHING RETURNING token`,
          Array.from({ length: 16 }, (_, i) => column(i)),
        )
      ).map((r) => r.token),
    );
    const rest: typeof todo = [];
    for (const item of todo) {
      if (inserted.delete(item.record.token)) {
        tokens[item.index] = item.record.token;
        outcome.inserted++;
      } else rest.push({ index: item.index, record: hooks.retokenize(item.index) });
    }
    todo = rest;
  }
}
