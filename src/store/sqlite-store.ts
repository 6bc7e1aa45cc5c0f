import Database from 'better-sqlite3';
import type { KeyPurpose } from '../domain/keys';
import type { DataType, Preserve, TokenFormat } from '../domain/types';
import { SQLITE_MIGRATIONS } from './sqlite-migrations';
import { decodeAuditList, encodeAuditList } from './audit-list-codec';
import {
  AuditCheckpoint,
  AuditHead,
  AuditRow,
  AuditSegment,
  AuditUnavailableError,
  DataKeyRecord,
  DataKeyState,
  GENESIS_HASH,
  InsertHooks,
  JobRecord,
  MAX_TOKEN_ATTEMPTS,
  ReencryptedRecord,
  PendingAudit,
  KeyInUseError,
  StaleDataKeyError,
  StoreUnavailableError,
  TokenCollisionError,
  TokenRecord,
  VaultStore,
} from './vault-store';

/** A tenant's audit rows after a sequence number, in order (served by the audit_tenant_seq index). */
export const AUDIT_AFTER_OF_TENANT_SQL = 'SELECT * FROM audit WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?';

interface TokenRow {
  token: string;
  tenant: string;
  type: string;
  format: string;
  preserve: string | null;
  binding: number;
  key_version: number;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  fingerprint: Buffer | null;
  subject_hash: Buffer | null;
  subject_sealed: Buffer | null;
  metadata: string | null;
  created_at: number;
  expires_at: number | null;
}

interface DataKeyRow {
  tenant: string;
  purpose: string;
  version: number;
  state: string;
  kek_id: string;
  wrapped: Buffer | null;
  created_at: number;
  encryptions: number;
}

interface AuditDbRow {
  seq: number;
  ts: string;
  request_id: string;
  principal: string;
  tenant: string | null;
  action: string;
  /** Lists: JSON text, or deflated JSON in a BLOB (audit-list-codec.ts). */
  types: string | Buffer;
  tokens: string | Buffer;
  purpose: string | null;
  outcome: string;
  reason: string | null;
  subjects: string | Buffer;
  key_version: number;
  prev_hash: Buffer;
  hash: Buffer;
}

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
 * before it is acknowledged. better-sqlite3 is synchronous; each method is one short transaction.
 */
export class SqliteStore implements VaultStore {
  readonly db: Database.Database;
  private readonly stmts;
  private pending: Array<{ work: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];
  /** A transaction around `work`, or a savepoint when already in one (built once: building is costly). */
  private readonly transactionally: Database.Transaction<(work: () => unknown) => unknown>;
  /** Told when deleted data stays in the WAL longer than the busy timeout (a reader holds it); never given values. */
  onWarning: (message: string) => void = () => undefined;
  private walPurge?: Promise<boolean>;
  private walPurgeRetry?: NodeJS.Timeout;

  constructor(
    readonly file: string,
    private readonly busyTimeoutMs = 5_000,
  ) {
    try {
      this.db = new Database(file);
      this.db.pragma(`busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('secure_delete = ON');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new StoreUnavailableError(`cannot open database ${file}: ${(err as Error).message}`, err);
    }
    this.migrateNow();
    this.stmts = this.prepare();
    this.transactionally = this.db.transaction((work: () => unknown) => work());
  }

  /** Applies pending migrations; each in its own transaction with its version record. */
  private migrateNow(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    for (const migration of SQLITE_MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      this.db.transaction(() => {
        this.db.exec(migration.sql);
        this.db
          .prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)')
          .run(migration.version, new Date().toISOString());
      })();
    }
  }

  /** Durability settings as the database reports them (checked at start-up). */
  settings(): { journalMode: string; synchronous: number } {
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.db.pragma('synchronous', { simple: true })),
    };
  }

  private prepare() {
    const db = this.db;
    return {
      activeKey: db.prepare("SELECT * FROM data_keys WHERE tenant = ? AND purpose = ? AND state = 'active'"),
      key: db.prepare('SELECT * FROM data_keys WHERE tenant = ? AND purpose = ? AND version = ?'),
      insertKey: db.prepare(
        `INSERT INTO data_keys (tenant, purpose, version, state, kek_id, wrapped, created_at, encryptions)
         VALUES (@tenant, @purpose, @version, @state, @kekId, @wrapped, @createdAt, @encryptions) ON CONFLICT DO NOTHING`,
      ),
      countEncryptions: db.prepare(
        "UPDATE data_keys SET encryptions = encryptions + ? WHERE tenant = ? AND purpose = 'data' AND version = ?",
      ),
      insertToken: db.prepare(
        `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, fingerprint, subject_hash, subject_sealed, metadata, created_at, expires_at)
         VALUES (@token, @tenant, @type, @format, @preserve, @binding, @keyVersion, @nonce, @ciphertext, @tag, @fingerprint, @subjectHash, @subjectSealed, @metadata, @createdAt, @expiresAt)
         ON CONFLICT DO NOTHING`,
      ),
      byFingerprint: db.prepare('SELECT * FROM tokens WHERE tenant = ? AND type = ? AND fingerprint = ?'),
      deleteOfTenant: db.prepare('DELETE FROM tokens WHERE token = ? AND tenant = ? RETURNING tenant, key_version'),
      addRecords: db.prepare(
        `INSERT INTO record_counts (tenant, key_version, records) VALUES (?, ?, ?)
         ON CONFLICT (tenant, key_version) DO UPDATE SET records = records + excluded.records`,
      ),
      removeRecords: db.prepare('UPDATE record_counts SET records = records - ? WHERE tenant = ? AND key_version = ?'),
      token: db.prepare('SELECT * FROM tokens WHERE token = ?'),
      auditHead: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
      insertAudit: db.prepare(
        `INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
         VALUES (@seq, @ts, @requestId, @principal, @tenant, @action, @types, @tokens, @purpose, @outcome, @reason, @subjects, @keyVersion, @prevHash, @hash)`,
      ),
      auditAfter: db.prepare('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?'),
      auditAfterOfTenant: db.prepare(AUDIT_AFTER_OF_TENANT_SQL),
      auditCheckpoint: db.prepare(
        'SELECT seq, hash, key_version AS keyVersion, created_at AS createdAt, mac FROM audit_checkpoint WHERE id = 1',
      ),
      saveAuditCheckpoint: db.prepare(
        `INSERT INTO audit_checkpoint (id, seq, hash, key_version, created_at, mac) VALUES (1, @seq, @hash, @keyVersion, @createdAt, @mac)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, key_version = excluded.key_version,
           created_at = excluded.created_at, mac = excluded.mac`,
      ),
      auditSegments: db.prepare(
        `SELECT from_seq AS fromSeq, through_seq AS throughSeq, prev_hash AS prevHash, head_hash AS headHash,
           archived_at AS archivedAt, key_version AS keyVersion, mac FROM audit_segments ORDER BY through_seq`,
      ),
      lastAuditSegment: db.prepare('SELECT through_seq AS seq, head_hash AS hash FROM audit_segments ORDER BY through_seq DESC LIMIT 1'),
      insertAuditSegment: db.prepare(
        `INSERT INTO audit_segments (through_seq, from_seq, prev_hash, head_hash, archived_at, key_version, mac)
         VALUES (@throughSeq, @fromSeq, @prevHash, @headHash, @archivedAt, @keyVersion, @mac)`,
      ),
      auditRowCount: db.prepare('SELECT count(*) AS n FROM audit WHERE seq BETWEEN ? AND ?'),
      auditLink: db.prepare('SELECT prev_hash AS prevHash, hash FROM audit WHERE seq = ?'),
      deleteAuditRows: db.prepare('DELETE FROM audit WHERE seq BETWEEN ? AND ?'),
      allKeys: db.prepare('SELECT * FROM data_keys ORDER BY tenant, purpose, version'),
      countsByKey: db.prepare('SELECT tenant, key_version AS version, records AS n FROM record_counts WHERE records > 0'),
      countAtVersion: db.prepare('SELECT count(*) AS n FROM tokens WHERE tenant = ? AND key_version = ?'),
      demoteActive: db.prepare("UPDATE data_keys SET state = 'decrypt-only' WHERE tenant = ? AND purpose = ? AND state = 'active'"),
      // Only a key still wrapped exactly as read (not destroyed or rewrapped meanwhile) is replaced.
      updateWrapped: db.prepare(
        "UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE tenant = ? AND purpose = ? AND version = ? AND kek_id = ? AND wrapped = ? AND state <> 'destroyed'",
      ),
      changeState: db.prepare(
        "UPDATE data_keys SET state = @to, wrapped = CASE WHEN @to = 'destroyed' THEN NULL ELSE wrapped END WHERE tenant = @tenant AND purpose = @purpose AND version = @version AND state = @from",
      ),
      behind: db.prepare(
        'SELECT * FROM tokens WHERE tenant = ? AND (key_version != ? OR binding != ?) AND token > ? ORDER BY token LIMIT ?',
      ),
      replaceCiphertext: db.prepare(
        `UPDATE tokens SET key_version = @keyVersion, binding = @binding, preserve = @preserve, nonce = @nonce, ciphertext = @ciphertext,
           tag = @tag, subject_sealed = @subjectSealed
         WHERE token = @token AND tenant = @tenant AND key_version = @fromVersion AND binding = @fromBinding`,
      ),
      jobProgress: db.prepare('UPDATE jobs SET done = done + ?, failed = failed + ?, updated_at = ? WHERE id = ?'),
      insertJob: db.prepare(
        `INSERT INTO jobs (id, kind, tenants, state, total, done, failed, requested_by, created_at, updated_at, finished_at, error)
         VALUES (@id, @kind, @tenants, @state, @total, @done, @failed, @requestedBy, @createdAt, @updatedAt, @finishedAt, @error)`,
      ),
      job: db.prepare('SELECT * FROM jobs WHERE id = ?'),
      unfinishedJobs: db.prepare("SELECT * FROM jobs WHERE state = 'running' ORDER BY created_at"),
    };
  }

  async ping(): Promise<void> {
    this.run(() => this.db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    clearTimeout(this.walPurgeRetry);
    if (this.db.open) this.db.close();
  }

  async activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined> {
    const row = this.run(() => this.stmts.activeKey.get(tenant, purpose) as DataKeyRow | undefined);
    return row && toDataKey(row);
  }

  async dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined> {
    const row = this.run(() => this.stmts.key.get(tenant, purpose, version) as DataKeyRow | undefined);
    return row && toDataKey(row);
  }

  async insertDataKey(record: DataKeyRecord): Promise<boolean> {
    return this.write(() => this.stmts.insertKey.run(record).changes === 1);
  }

  async insertTokens(records: TokenRecord[], audit: PendingAudit, hooks: InsertHooks): Promise<string[]> {
    let replaced = 0;
    const tokens = await this.write(() => {
      // A batch is sealed under one key: check each distinct version once, not per record.
      for (const version of new Set(records.map((r) => r.keyVersion))) this.requireActive(records[0].tenant, version);
      const outcome = { seals: 0, inserted: 0, replaced: [] as string[] };
      const tokens = records.map((record, index) => this.insertOne(record, index, hooks, outcome));
      if (records.length > 0) {
        this.stmts.countEncryptions.run(outcome.seals, records[0].tenant, records[0].keyVersion);
        this.stmts.addRecords.run(records[0].tenant, records[0].keyVersion, outcome.inserted);
      }
      audit.entry.tokens = tokens;
      if (outcome.replaced.length) audit.entry.reason = `replaced expired deterministic tokens: ${outcome.replaced.join(', ')}`;
      this.appendAuditNow(audit);
      replaced = outcome.replaced.length;
      return tokens;
    });
    // Replaced records were deleted: their bytes must leave the WAL too, as for deleteToken.
    if (replaced > 0) await this.purgeWal();
    return tokens;
  }

  /** Takes a deleted record (a RETURNING row) off its key version's count; false when nothing was deleted. */
  private uncount(deleted: unknown): boolean {
    const row = deleted as { tenant: string; key_version: number } | undefined;
    if (row) this.stmts.removeRecords.run(1, row.tenant, row.key_version);
    return row !== undefined;
  }

  /** Inside a write transaction: the data key version must still be the active one. */
  private requireActive(tenant: string, version: number): void {
    const key = this.stmts.key.get(tenant, 'data', version) as DataKeyRow | undefined;
    if (key?.state !== 'active') throw new StaleDataKeyError();
  }

  /** Inserts one record; counts every seal made under the key (retries and subjects included). */
  private insertOne(
    first: TokenRecord,
    index: number,
    hooks: InsertHooks,
    outcome: { seals: number; inserted: number; replaced: string[] },
  ): string {
    let record = first;
    if (record.fingerprint) {
      const existing = (this.stmts.byFingerprint.all(record.tenant, record.type, record.fingerprint) as TokenRow[]).map(toTokenRecord);
      if (existing.length > 0) {
        const decision = hooks.resolveExisting(index, existing);
        if (typeof decision === 'object' && 'reuse' in decision) return decision.reuse;
        if (typeof decision === 'object') {
          for (const token of decision.replace) this.uncount(this.stmts.deleteOfTenant.get(token, record.tenant));
          outcome.replaced.push(...decision.replace);
        }
      }
    }
    for (let attempt = 0; attempt < MAX_TOKEN_ATTEMPTS; attempt++) {
      outcome.seals += record.subjectSealed ? 2 : 1;
      if (this.stmts.insertToken.run(toTokenParams(record)).changes === 1) {
        outcome.inserted++;
        return record.token;
      }
      record = hooks.retokenize(index);
    }
    throw new TokenCollisionError();
  }

  async findTokens(tokens: readonly string[]): Promise<Map<string, TokenRecord[]>> {
    const lookup = () => {
      const found = new Map<string, TokenRecord[]>();
      for (const token of tokens) {
        if (found.has(token)) continue;
        const rows = this.stmts.token.all(token) as TokenRow[];
        if (rows.length > 0) found.set(token, rows.map(toTokenRecord));
      }
      return found;
    };
    // A batch reads in one transaction: one snapshot, and one WAL read lock instead of one per token.
    return this.run(() => (tokens.length > 1 ? (this.transactionally(lookup) as Map<string, TokenRecord[]>) : lookup()));
  }

  async findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]> {
    const lookup = () =>
      keys.flatMap((k) => (this.stmts.byFingerprint.all(tenant, k.type, k.fingerprint) as TokenRow[]).map(toTokenRecord));
    return this.run(() => (keys.length > 1 ? (this.transactionally(lookup) as TokenRecord[]) : lookup()));
  }

  async deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean> {
    const deleted = await this.write(() => {
      const deleted = this.uncount(this.stmts.deleteOfTenant.get(token, tenant));
      if (deleted) this.appendAuditNow(audit);
      return deleted;
    });
    // secure_delete zeroes the row in the database pages, but the WAL still holds the frames that inserted it.
    if (deleted) await this.purgeWal();
    return deleted;
  }

  async listDataKeys(): Promise<DataKeyRecord[]> {
    return this.run(() => (this.stmts.allKeys.all() as DataKeyRow[]).map(toDataKey));
  }

  async recordCountsByKey(): Promise<Map<string, number>> {
    const rows = this.run(() => this.stmts.countsByKey.all() as { tenant: string; version: number; n: number }[]);
    return new Map(rows.map((r) => [`${r.tenant}/${r.version}`, r.n]));
  }

  async rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean> {
    return this.write(() => {
      if (this.stmts.key.get(next.tenant, next.purpose, next.version)) return false;
      if (expectedActive !== undefined) {
        const active = this.stmts.activeKey.get(next.tenant, next.purpose) as DataKeyRow | undefined;
        if (active?.version !== expectedActive) return false;
      }
      this.stmts.demoteActive.run(next.tenant, next.purpose);
      this.stmts.insertKey.run(next);
      this.appendAuditNow(audit);
      return true;
    });
  }

  async updateWrappedKey(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: { kekId: string; wrapped: Buffer },
    to: { kekId: string; wrapped: Buffer },
  ): Promise<boolean> {
    return this.write(
      () =>
        this.stmts.updateWrapped.run(to.kekId, to.wrapped, key.tenant, key.purpose, key.version, from.kekId, from.wrapped).changes === 1,
    );
  }

  async changeDataKeyState(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: DataKeyState,
    to: DataKeyState,
    audit: PendingAudit,
  ): Promise<boolean> {
    const changed = await this.write(() => {
      // Counted in the same transaction as the change, so no record can slip in between.
      const records = (this.stmts.countAtVersion.get(key.tenant, key.version) as { n: number }).n;
      if (key.purpose === 'data' && to !== 'decrypt-only' && records > 0) throw new KeyInUseError(records);
      const done = this.stmts.changeState.run({ ...key, from, to }).changes === 1;
      if (done) this.appendAuditNow(audit);
      return done;
    });
    // Crypto-shred: push the freed (zeroed, secure_delete) pages out of the WAL too.
    if (changed && to === 'destroyed') await this.purgeWal();
    return changed;
  }

  async recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]> {
    return this.run(() => (this.stmts.behind.all(tenant, activeVersion, binding, afterToken, limit) as TokenRow[]).map(toTokenRecord));
  }

  async replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number> {
    return this.write(() => {
      let swapped = 0;
      for (const update of updates) {
        this.requireActive(update.tenant, update.keyVersion);
        const changes = this.stmts.replaceCiphertext.run(update).changes;
        swapped += changes;
        if (changes) {
          this.stmts.countEncryptions.run(update.subjectSealed ? 2 : 1, update.tenant, update.keyVersion);
          this.stmts.removeRecords.run(1, update.tenant, update.fromVersion);
          this.stmts.addRecords.run(update.tenant, update.keyVersion, 1);
        }
      }
      this.stmts.jobProgress.run(swapped, failed, now, jobId);
      return swapped;
    });
  }

  async insertJob(job: JobRecord): Promise<void> {
    await this.write(() => this.stmts.insertJob.run({ ...job, tenants: JSON.stringify(job.tenants) }));
  }

  async job(id: string): Promise<JobRecord | undefined> {
    const row = this.run(() => this.stmts.job.get(id) as JobRow | undefined);
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
    const sql = `UPDATE jobs SET ${keys.map((k) => `${columns[k]} = @${k}`).join(', ')} WHERE id = @id`;
    await this.write(() => this.db.prepare(sql).run({ ...fields, id }));
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return this.run(() => (this.stmts.unfinishedJobs.all() as JobRow[]).map(toJob));
  }

  async appendAudit(audit: PendingAudit): Promise<AuditRow> {
    return this.write(() => this.appendAuditNow(audit));
  }

  private appendAuditNow({ entry, sealer }: PendingAudit): AuditRow {
    // An emptied log (every row archived) continues from the last archived segment.
    const head = (this.stmts.auditHead.get() ?? this.stmts.lastAuditSegment.get()) as AuditHead | undefined;
    const seq = (head?.seq ?? 0) + 1;
    const prevHash = head?.hash ?? GENESIS_HASH;
    const hash = sealer.seal(prevHash, seq, entry, sealer.keyVersion);
    const row: AuditRow = { ...entry, seq, keyVersion: sealer.keyVersion, prevHash, hash };
    try {
      this.stmts.insertAudit.run({
        ...row,
        types: encodeAuditList(row.types),
        tokens: encodeAuditList(row.tokens),
        subjects: encodeAuditList(row.subjects),
      });
    } catch (err) {
      // Whatever the cause, the enclosing transaction rolls back: no change without its audit row.
      throw new AuditUnavailableError(err);
    }
    return row;
  }

  async auditRows(afterSeq: number, limit: number, tenants?: readonly string[]): Promise<AuditRow[]> {
    const rows = this.run(() =>
      tenants ? this.auditRowsOf(tenants, afterSeq, limit) : (this.stmts.auditAfter.all(afterSeq, limit) as AuditDbRow[]),
    );
    return rows.map(toAuditRow);
  }

  /**
   * One index range per tenant (audit_tenant_seq), each already in seq order and cut at `limit`,
   * merged: the cost follows the page size, not the size of the audit table.
   */
  private auditRowsOf(tenants: readonly string[], afterSeq: number, limit: number): AuditDbRow[] {
    const read = () =>
      [...new Set(tenants)].flatMap((tenant) => this.stmts.auditAfterOfTenant.all(tenant, afterSeq, limit) as AuditDbRow[]);
    const rows = tenants.length > 1 ? (this.transactionally(read) as AuditDbRow[]) : read();
    return rows.sort((a, b) => a.seq - b.seq).slice(0, limit);
  }

  async auditHead(): Promise<AuditHead | undefined> {
    return this.run(() => this.stmts.auditHead.get() as AuditHead | undefined);
  }

  async auditCheckpoint(): Promise<AuditCheckpoint | undefined> {
    return this.run(() => this.stmts.auditCheckpoint.get() as AuditCheckpoint | undefined);
  }

  async saveAuditCheckpoint(checkpoint: AuditCheckpoint): Promise<void> {
    await this.write(() => this.stmts.saveAuditCheckpoint.run(checkpoint));
  }

  async auditSegments(): Promise<AuditSegment[]> {
    return this.run(() => this.stmts.auditSegments.all() as AuditSegment[]);
  }

  async pruneAuditSegment(segment: AuditSegment, audit: PendingAudit): Promise<boolean> {
    return this.write(() => {
      const last = this.stmts.lastAuditSegment.get() as AuditHead | undefined;
      if (segment.fromSeq !== (last?.seq ?? 0) + 1) return false;
      const { n } = this.stmts.auditRowCount.get(segment.fromSeq, segment.throughSeq) as { n: number };
      if (n !== segment.throughSeq - segment.fromSeq + 1) return false;
      const first = this.stmts.auditLink.get(segment.fromSeq) as { prevHash: Buffer; hash: Buffer };
      const end = this.stmts.auditLink.get(segment.throughSeq) as { prevHash: Buffer; hash: Buffer };
      if (!first.prevHash.equals(segment.prevHash) || !end.hash.equals(segment.headHash)) return false;
      this.stmts.deleteAuditRows.run(segment.fromSeq, segment.throughSeq);
      this.stmts.insertAuditSegment.run(segment);
      this.appendAuditNow(audit);
      return true;
    });
  }

  /**
   * Copies every WAL frame into the database file and truncates the WAL, so deleted data (whose
   * database pages secure_delete zeroed) no longer survives in the WAL either. Another process
   * holding a read snapshot (a CLI command, an online backup) keeps the WAL from being truncated:
   * the attempt is repeated without blocking the event loop for up to the busy timeout, then the
   * answer goes out (the deletion itself is committed), a warning is reported and the purge keeps
   * being retried in the background. Resolves true once the WAL is empty.
   */
  purgeWal(): Promise<boolean> {
    this.walPurge ??= this.purgeWalWithin(this.busyTimeoutMs).finally(() => (this.walPurge = undefined));
    return this.walPurge.then((done) => {
      if (!done) this.retryWalPurgeLater();
      return done;
    });
  }

  private async purgeWalWithin(waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      if (this.tryPurgeWal()) return true;
      if (Date.now() >= deadline || !this.db.open) return false;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * One non-blocking TRUNCATE checkpoint (SQLite's busy handler would block the whole process while
   * it waits). A failure counts as not done: the deletion is committed either way.
   */
  private tryPurgeWal(): boolean {
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

  private retryWalPurgeLater(): void {
    if (this.walPurgeRetry || !this.db.open) return;
    this.onWarning('deleted data is still in the WAL: another process holds a read snapshot; retrying the checkpoint');
    const retry = () => {
      this.walPurgeRetry = undefined;
      if (!this.db.open || this.tryPurgeWal()) return;
      this.walPurgeRetry = setTimeout(retry, WAL_PURGE_RETRY_MS).unref();
    };
    this.walPurgeRetry = setTimeout(retry, WAL_PURGE_RETRY_MS).unref();
  }

  /** Runs a read; SQLite's busy/full/IO failures become StoreUnavailableError. */
  private run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.mapError(err);
    }
  }

  private mapError(err: unknown): unknown {
    const code = (err as { code?: string }).code ?? '';
    if (/^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code) || !this.db.open) {
      return new StoreUnavailableError(`database unavailable (${code || 'closed'})`, err);
    }
    return err;
  }

  /**
   * Group commit: the writes that arrive in one event-loop turn share one transaction, so one
   * fsync (synchronous=FULL) serves them all. Each runs in its own savepoint, so one failing write
   * does not undo the others; every caller is answered only after the shared commit is on disk.
   */
  private write<T>(work: () => T): Promise<T> {
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

const WAL_PURGE_RETRY_MS = 1_000;

interface JobRow {
  id: string;
  kind: string;
  tenants: string;
  state: string;
  total: number;
  done: number;
  failed: number;
  requested_by: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  error: string | null;
}

function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind as JobRecord['kind'],
    tenants: JSON.parse(row.tenants),
    state: row.state as JobRecord['state'],
    total: row.total,
    done: row.done,
    failed: row.failed,
    requestedBy: row.requested_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    error: row.error,
  };
}

function toTokenParams(r: TokenRecord) {
  return { ...r, metadata: r.metadata ? JSON.stringify(r.metadata) : null };
}

function toTokenRecord(row: TokenRow): TokenRecord {
  return {
    token: row.token,
    tenant: row.tenant,
    type: row.type as DataType,
    format: row.format as TokenFormat,
    preserve: row.preserve as Preserve | null,
    binding: row.binding,
    keyVersion: row.key_version,
    nonce: row.nonce,
    ciphertext: row.ciphertext,
    tag: row.tag,
    fingerprint: row.fingerprint,
    subjectHash: row.subject_hash,
    subjectSealed: row.subject_sealed,
    metadata: row.metadata ? JSON.parse(row.metadata) : null,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

function toDataKey(row: DataKeyRow): DataKeyRecord {
  return {
    tenant: row.tenant,
    purpose: row.purpose as KeyPurpose,
    version: row.version,
    state: row.state as DataKeyState,
    kekId: row.kek_id,
    wrapped: row.wrapped,
    createdAt: row.created_at,
    encryptions: row.encryptions,
  };
}

function toAuditRow(row: AuditDbRow): AuditRow {
  return {
    seq: row.seq,
    ts: row.ts,
    requestId: row.request_id,
    principal: row.principal,
    tenant: row.tenant,
    action: row.action,
    types: decodeAuditList(row.types),
    tokens: decodeAuditList(row.tokens),
    purpose: row.purpose,
    outcome: row.outcome as AuditRow['outcome'],
    reason: row.reason,
    subjects: decodeAuditList(row.subjects),
    keyVersion: row.key_version,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
