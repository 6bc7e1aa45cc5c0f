import type Database from 'better-sqlite3';
import type { KeyPurpose } from '../domain/keys';
import type { DataType } from '../domain/types';
import { appendAuditPlan, pruneAuditSegmentPlan } from './rules/audit';
import { changeDataKeyStatePlan, rotateDataKeyPlan } from './rules/data-keys';
import { inCountOrder, purgeExpiredPlan } from './rules/retention';
import { deleteTokenPlan, insertTokensPlan, replaceCiphertextsPlan } from './rules/tokens';
import { changeConsentPlan, eraseSubjectPlan } from './rules/subjects';
import { auditStatements } from './sqlite/audit-statements';
import { durabilitySettings, mapSqliteError, openSqlite, requireDurable } from './sqlite/connection';
import { dataKeyStatements } from './sqlite/data-key-statements';
import { GroupCommit } from './sqlite/group-commit';
import { jobStatements } from './sqlite/job-statements';
import { leaseStatements } from './sqlite/lease-statements';
import { toAuditRow } from './rows';
import { subjectStatements } from './sqlite/subject-statements';
import { tokenStatements } from './sqlite/token-statements';
import { WalPurger } from './sqlite/wal-purge';
import { Plan, TransactionOps, runPlan } from './transaction-plan';
import type {
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
  StoredRecord,
  SubjectConsent,
  SubjectRow,
  TokenRecord,
  VaultStore,
} from './vault-store';

export { AUDIT_AFTER_OF_TENANT_SQL } from './sqlite/audit-statements';
export { DELETE_EXPIRED_SQL } from './sqlite/token-statements';

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
 * before it is acknowledged. better-sqlite3 is synchronous; every write runs its plan (src/store/
 * rules/) inside one group-committed transaction that holds the database's single write lock, so
 * the plans' row locks need nothing more here.
 */
export class SqliteStore implements VaultStore {
  /** The connection itself: for tests and SQLite-only tools, never for code above src/store/. */
  readonly db: Database.Database;
  private readonly tokens;
  private readonly keys;
  private readonly jobs;
  private readonly audit;
  private readonly subjects;
  private readonly leases;
  private readonly ops: TransactionOps;
  private readonly writer: GroupCommit;
  private readonly wal: WalPurger;
  /** Told when deleted data stays in the WAL longer than the busy timeout (a reader holds it); never given values. */
  onWarning: (message: string) => void = () => undefined;

  constructor(
    readonly file: string,
    busyTimeoutMs = 5_000,
  ) {
    this.db = openSqlite(file, busyTimeoutMs);
    this.tokens = tokenStatements(this.db);
    this.keys = dataKeyStatements(this.db);
    this.jobs = jobStatements(this.db);
    this.audit = auditStatements(this.db);
    this.subjects = subjectStatements(this.db);
    this.leases = leaseStatements(this.db);
    this.ops = { ...this.tokens.ops, ...this.keys.ops, ...this.jobs.ops, ...this.audit.ops, ...this.subjects.ops };
    this.writer = new GroupCommit(this.db, (err) => mapSqliteError(this.db, err));
    this.wal = new WalPurger(this.db, busyTimeoutMs, (message) => this.onWarning(message));
  }

  /** Durability settings as the database reports them. */
  settings(): { journalMode: string; synchronous: number } {
    return durabilitySettings(this.db);
  }

  /** Refuses a database that would acknowledge writes not yet on disk. */
  requireDurable(): void {
    requireDurable(this.db);
  }

  async ping(): Promise<void> {
    this.read(() => this.db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    this.wal.stop();
    if (this.db.open) this.db.close();
  }

  async activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined> {
    return this.read(() => this.keys.activeKey(tenant, purpose));
  }

  async dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined> {
    return this.read(() => this.keys.key(tenant, purpose, version));
  }

  async insertDataKey(record: DataKeyRecord): Promise<boolean> {
    return this.writer.write(() => this.keys.insert(record));
  }

  async insertTokens(
    records: TokenRecord[],
    audit: PendingAudit,
    hooks: InsertHooks,
    consents?: readonly SubjectConsent[],
  ): Promise<string[]> {
    const { tokens, replaced } = await this.transact(insertTokensPlan(records, audit, hooks, consents));
    // Replaced (expired) records were deleted: their bytes must leave the WAL too, as for deleteToken.
    if (replaced.length > 0) await this.wal.purge();
    return tokens;
  }

  async findTokens(tokens: readonly string[]): Promise<Map<string, StoredRecord[]>> {
    const lookup = () => {
      const found = new Map<string, StoredRecord[]>();
      for (const token of tokens) {
        if (found.has(token)) continue;
        const records = this.tokens.recordsOfToken(token);
        if (records.length > 0) found.set(token, records);
      }
      return found;
    };
    // A batch reads in one transaction: one snapshot, and one WAL read lock instead of one per token.
    return this.read(() => (tokens.length > 1 ? this.snapshot(lookup) : lookup()));
  }

  async findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]> {
    const lookup = () => keys.flatMap((k) => this.tokens.recordsByFingerprint(tenant, k.type, k.fingerprint));
    return this.read(() => (keys.length > 1 ? this.snapshot(lookup) : lookup()));
  }

  async deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean> {
    const deleted = await this.transact(deleteTokenPlan(tenant, token, audit));
    // secure_delete zeroes the row in the database pages, but the WAL still holds the frames that inserted it.
    if (deleted) await this.wal.purge();
    return deleted;
  }

  async subject(tenant: string, subjectHash: Buffer): Promise<SubjectRow | undefined> {
    return this.read(() => this.subjects.subject(tenant, subjectHash));
  }

  async subjectRecords(tenant: string, subjectHash: Buffer, afterToken: string, limit: number): Promise<StoredRecord[]> {
    return this.read(() => this.subjects.recordsPage(tenant, subjectHash, afterToken, limit));
  }

  async auditRowsOfSubject(handle: Buffer, afterSeq: number, limit: number): Promise<AuditRow[]> {
    return this.read(() => this.subjects.auditRowsOf(handle, afterSeq, limit));
  }

  async changeConsent(tenant: string, subjectHash: Buffer, change: ConsentChange, now: number, audit: PendingAudit): Promise<SubjectRow> {
    return this.transact(changeConsentPlan(tenant, subjectHash, change, now, audit));
  }

  async eraseSubject(tenant: string, subjectHash: Buffer, audit: PendingAudit): Promise<{ records: number }> {
    const erased = await this.transact(eraseSubjectPlan(tenant, subjectHash, audit));
    // secure_delete zeroed the rows in the database pages; the WAL frames that wrote them must go too.
    await this.wal.purge();
    return erased;
  }

  async listDataKeys(): Promise<DataKeyRecord[]> {
    return this.read(() => this.keys.all());
  }

  async recordCountsByKey(): Promise<Map<string, number>> {
    const rows = this.read(() => this.tokens.recordCounts());
    return new Map(rows.map((r) => [`${r.tenant}/${r.version}`, r.n]));
  }

  async rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean> {
    return this.transact(rotateDataKeyPlan(next, audit, expectedActive));
  }

  async updateWrappedKey(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: { kekId: string; wrapped: Buffer },
    to: { kekId: string; wrapped: Buffer },
  ): Promise<boolean> {
    return this.writer.write(() => this.keys.updateWrapped(key, from, to));
  }

  async changeDataKeyState(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: DataKeyState,
    to: DataKeyState,
    audit: PendingAudit,
  ): Promise<boolean> {
    const changed = await this.transact(changeDataKeyStatePlan(key, from, to, audit));
    // Crypto-shred: push the freed (zeroed, secure_delete) pages out of the WAL too.
    if (changed && to === 'destroyed') await this.wal.purge();
    return changed;
  }

  async recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]> {
    return this.read(() => this.tokens.recordsBehind(tenant, activeVersion, binding, afterToken, limit));
  }

  async replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number> {
    return this.transact(replaceCiphertextsPlan(updates, jobId, failed, now));
  }

  async insertJob(job: JobRecord): Promise<void> {
    await this.writer.write(() => this.jobs.insert(job));
  }

  async job(id: string): Promise<JobRecord | undefined> {
    return this.read(() => this.jobs.job(id));
  }

  async updateJob(id: string, fields: JobFields): Promise<void> {
    await this.writer.write(() => this.jobs.update(id, fields));
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return this.read(() => this.jobs.unfinished());
  }

  async leaseJob(id: string, owner: string, leaseMs: number): Promise<boolean> {
    return this.writer.write(() => this.jobs.lease(id, owner, leaseMs));
  }

  async releaseJob(id: string, owner: string): Promise<void> {
    await this.writer.write(() => this.jobs.release(id, owner));
  }

  async purgeExpired(now: number, limit: number, audit: PendingAudit): Promise<ExpiredCount[]> {
    const counts = await this.transact(purgeExpiredPlan(now, limit, audit));
    // As after deleteToken: the purged records' bytes must leave the WAL too.
    if (counts.length > 0) await this.wal.purge();
    return counts;
  }

  async expiredCounts(now: number): Promise<ExpiredCount[]> {
    return inCountOrder(this.read(() => this.tokens.expiredCounts(now)));
  }

  async acquireLease(name: string, owner: string, leaseMs: number): Promise<boolean> {
    return this.writer.write(() => this.leases.acquire(name, owner, leaseMs));
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.writer.write(() => this.leases.release(name, owner));
  }

  async appendAudit(audit: PendingAudit): Promise<AuditRow> {
    return this.transact(appendAuditPlan(audit));
  }

  async auditRows(afterSeq: number, limit: number, tenants?: readonly string[]): Promise<AuditRow[]> {
    return this.read(() => (tenants ? this.auditRowsOf(tenants, afterSeq, limit) : this.audit.rowsAfter(afterSeq, limit)));
  }

  /**
   * One index range per tenant (audit_tenant_seq), each already in seq order and cut at `limit`,
   * merged: the cost follows the page size, not the size of the audit table.
   */
  private auditRowsOf(tenants: readonly string[], afterSeq: number, limit: number): AuditRow[] {
    const read = () => [...new Set(tenants)].flatMap((tenant) => this.audit.rowsOfTenantAfter(tenant, afterSeq, limit));
    const rows = tenants.length > 1 ? this.snapshot(read) : read();
    return rows
      .sort((a, b) => Number(a.seq) - Number(b.seq))
      .slice(0, limit)
      .map(toAuditRow);
  }

  async auditHead(): Promise<AuditHead | undefined> {
    return this.read(() => this.audit.head());
  }

  async auditCheckpoint(): Promise<AuditCheckpoint | undefined> {
    return this.read(() => this.audit.checkpoint());
  }

  async saveAuditCheckpoint(checkpoint: AuditCheckpoint): Promise<void> {
    await this.writer.write(() => this.audit.saveCheckpoint(checkpoint));
  }

  async auditSegments(): Promise<AuditSegment[]> {
    return this.read(() => this.audit.segments());
  }

  async pruneAuditSegment(segment: AuditSegment, audit: PendingAudit): Promise<boolean> {
    return this.transact(pruneAuditSegmentPlan(segment, audit));
  }

  /** Empties the WAL of deleted data (see WalPurger); resolves true once it is empty. */
  purgeWal(): Promise<boolean> {
    return this.wal.purge();
  }

  /** Runs a write plan in the next group commit. */
  private transact<T>(plan: Plan<T>): Promise<T> {
    return this.writer.write(() => runPlan(plan, this.ops));
  }

  /** Several reads in one transaction: one snapshot. */
  private snapshot<T>(read: () => T): T {
    return this.writer.transactionally(read) as T;
  }

  /** Runs a read; SQLite's busy/full/IO failures become StoreUnavailableError. */
  private read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw mapSqliteError(this.db, err);
    }
  }
}
