import type { DataType, Preserve, TokenFormat } from '../domain/types';
import { InternalError } from '../errors';
import type { DataKeyRecord, DataKeyState, KeyPurpose } from '../domain/keys';

export type Metadata = Record<string, string | number | boolean | null>;

/**
 * One tokenized value as stored: ciphertext only, bound to its row by the AAD. A token string is
 * unique within its tenant only: each tenant has its own token space.
 */
export interface TokenRecord {
  token: string;
  tenant: string;
  type: DataType;
  format: TokenFormat;
  /** What the token keeps of the value; null on records written before it was recorded (binding 1). */
  preserve: Preserve | null;
  /** Which columns the ciphertext's AAD covers: 1 (tenant, type, token, key version), 2 (all) or 3 (all, value under a per-subject key too); see record-crypto. */
  binding: number;
  keyVersion: number;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  /** HMAC of the normalised value, set only for deterministic tokens (unique per tenant, type, format and preserve). */
  fingerprint: Buffer | null;
  /** HMAC of the data subject id, for GDPR/CCPA export and erasure lookups. */
  subjectHash: Buffer | null;
  /** The subject id itself, sealed under the same data key (nonce | tag | ciphertext). */
  subjectSealed: Buffer | null;
  metadata: Metadata | null;
  createdAt: number;
  expiresAt: number | null;
}

/** A data subject's row (tenant, subject HMAC): the handle audit rows name it by, and its consent. */
export interface SubjectRow {
  /** 16 random bytes; linkable to the subject only through this row, which erasure deletes. */
  handle: Buffer;
  /** The purposes the subject consented to; null when none were recorded (no restriction). */
  purposes: string[] | null;
}

/** A record as read back: with its subject's row, when it has a subject (one read, a join). */
export interface StoredRecord extends TokenRecord {
  subjectRow: SubjectRow | null;
}

/** Purposes a tokenize adds to its subject's consented set. */
export interface SubjectConsent {
  subjectHash: Buffer;
  purposes: readonly string[];
}

/** A change of a subject's consent: purposes granted and withdrawn. */
export interface ConsentChange {
  grant: readonly string[];
  withdraw: readonly string[];
}

export interface ReencryptedRecord {
  token: string;
  tenant: string;
  fromVersion: number;
  fromBinding: number;
  keyVersion: number;
  binding: number;
  preserve: Preserve | null;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  subjectSealed: Buffer | null;
}

/** The fields of a job that updateJob may set. */
export type JobFields = Partial<Pick<JobRecord, 'state' | 'total' | 'done' | 'failed' | 'updatedAt' | 'finishedAt' | 'error'>>;

export interface JobRecord {
  id: string;
  kind: 'reencrypt';
  /** Tenants the job covers. */
  tenants: string[];
  state: 'running' | 'completed' | 'failed';
  total: number;
  done: number;
  failed: number;
  requestedBy: string;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  error: string | null;
}

// The data-key records are domain vocabulary; the store's modules keep naming them through this seam.
export type { DataKeyRecord, DataKeyState };

/** What an audit row says. Never a value; personal identifiers only as HMACs. */
export interface AuditEntry {
  ts: string;
  requestId: string;
  principal: string;
  tenant: string | null;
  action: string;
  types: string[];
  tokens: string[];
  purpose: string | null;
  outcome: 'allow' | 'deny' | 'partial';
  reason: string | null;
  /**
   * The data subjects involved, by handle (hex of 16 random bytes, see SubjectRow); rows written
   * before subjects had handles name them by keyed HMAC (hex of 32 bytes). Never the ids themselves.
   */
  subjects: string[];
}

export interface AuditRow extends AuditEntry {
  seq: number;
  keyVersion: number;
  prevHash: Buffer;
  hash: Buffer;
}

/** Computes a row's chained MAC; the store calls it inside the transaction that appends the row. */
export interface AuditSealer {
  readonly keyVersion: number;
  seal(prevHash: Buffer, seq: number, entry: AuditEntry, keyVersion: number): Buffer;
}

/** The newest audit row: where the chain currently ends. */
export interface AuditHead {
  seq: number;
  hash: Buffer;
}

/**
 * The last row a verification found intact, so the next one starts after it. MACed under the
 * audit key (see audit-marks.ts): a database writer cannot move it forward over rows it edited.
 */
export interface AuditCheckpoint {
  seq: number;
  hash: Buffer;
  keyVersion: number;
  createdAt: string;
  mac: Buffer;
}

/**
 * A segment of the chain that was exported to an archive file and pruned from the store: rows
 * fromSeq..throughSeq, the hash the first chains from and the hash of the last (what the next
 * stored row chains from). MACed under the audit key (see audit-marks.ts).
 */
export interface AuditSegment {
  fromSeq: number;
  throughSeq: number;
  prevHash: Buffer;
  headHash: Buffer;
  archivedAt: string;
  keyVersion: number;
  mac: Buffer;
}

/** How many records of one tenant and data type a purge deleted, or found expired. Counts only: no token, no subject. */
export interface ExpiredCount {
  tenant: string;
  type: DataType;
  records: number;
}

export interface PendingAudit {
  entry: AuditEntry;
  sealer: AuditSealer;
}

/** Gives record `index` a fresh token (and so a fresh ciphertext) after a token collision. */
type Retokenize = (index: number) => TokenRecord;

/**
 * What to do with deterministic record `index` given the records already stored with its tenant,
 * type and fingerprint (any format and preserve): return one's token (`reuse`), delete some and
 * insert (`replace`), or insert alongside (`insert`). Called inside the write transaction, so
 * nothing can change between the decision and the write; it may throw to refuse the whole batch.
 * A store that runs the transaction again (a concurrent writer won a race) calls it again.
 */
export type ResolveExisting = (index: number, existing: TokenRecord[]) => { reuse: string } | { replace: string[] } | 'insert';

export interface InsertHooks {
  retokenize: Retokenize;
  resolveExisting: ResolveExisting;
}

/**
 * Persistence seam. Every write that changes records also appends its audit row in the same
 * transaction, so a record never exists without the audit of its creation, nor the reverse.
 *
 * ## Transactions and locks
 * Each method is one transaction: it commits (durably, before its promise resolves) or writes
 * nothing. Writes that involve a decision run a plan of src/store/rules/ over the store's
 * TransactionOps (see transaction-plan.ts), so every store makes the same decisions; a store only
 * supplies the statements and the locks each primitive names. On a database with concurrent
 * writers at READ COMMITTED (PostgreSQL, several vault instances) the locks below are what keep
 * each invariant true; the SQLite store gets all of them from its single write lock (BEGIN
 * IMMEDIATE holds the whole database for the transaction). Within one call, locks are taken in one
 * order — key family, data-key rows, subject rows (sorted), token rows, job row, audit chain head —
 * so writers queue, never deadlock. A store that groups several calls into one transaction (group
 * commit) locks the existing subject rows of all of them first, sorted, so that groups whose calls
 * came in opposite orders queue too (in a group, subject rows thus come before data-key rows; the
 * calls that lock data keys exclusively, rotation and state changes, lock no subject). It may still
 * meet a deadlock or serialization failure between groups (a subject row created by another
 * transaction after the group's first locks, claimed in its call's turn; first inserts of the same
 * deterministic values in opposite orders), and then runs the whole group again: never one call
 * alone, whose rollback to a savepoint would keep the locks of the calls before it, and so the
 * deadlock.
 *
 * Invariants that need the locks, and how each holds with several writers:
 * - Active key at commit (insertTokens, replaceCiphertexts): the target data-key row is read
 *   `FOR SHARE` inside the transaction, and its state must be `active`. A rotation, retire or
 *   destroy updates that row, so it waits for the insert to commit (and then counts its records);
 *   an insert that starts after one commits reads the new state and throws StaleDataKeyError.
 *   A store that groups writes may answer a later write of the same transaction from the row it
 *   already holds share-locked (nothing else can change it), unless the transaction itself has
 *   written data keys since, or a savepoint could have released the lock.
 * - Count-then-retire (changeDataKeyState): the key row is locked `FOR UPDATE` first, and the
 *   records are counted by a later statement (a fresh READ COMMITTED snapshot): every insert into
 *   that version has committed by then (it held the row share-locked) and none can start.
 * - Check-then-insert in rotation (rotateDataKey): rotations and state changes of one (tenant,
 *   purpose) take the key family lock (a transaction-scoped advisory lock: a row lock cannot cover
 *   a version not inserted yet) and lock the active row `FOR UPDATE`, so the expected-active check,
 *   the demotion and the insert of the next version see no other rotation in between. The
 *   primary key and the one-active unique index back this up: a conflict there rolls back and
 *   retries (ConcurrentWriteError), and the retry sees the winner and returns false.
 * - Audit chain head (every audit row): the head (max seq and its hash) is read after taking the
 *   chain lock (an advisory lock, or `FOR UPDATE` on a one-row head table) held to commit, and
 *   the next row is seq + 1 chained from it; the seq primary key backs this up. Appends from all
 *   writers are serialised at this point only, which is taken last, so it is held briefly: on
 *   PostgreSQL for the head's read, the chaining, and one more round trip carrying the rows'
 *   insert, the head's update and COMMIT (see postgres-group-commit.ts).
 * - Deterministic identity (insertTokens): the unique index on (tenant, type, fingerprint,
 *   format, preserve) decides between two first insertions of one value: the second waits for the
 *   first and then fails the identity check; the store runs the transaction again, and the hook
 *   sees the winner's record (and asks the caller to vet it, see ResolveExisting).
 * - Record counts (record_counts): changed only by atomic increments (`records = records + n`, an
 *   upsert for a new version) in the transaction that inserts, deletes or moves the records, by
 *   the number of rows the statements reported changed: exact under any interleaving.
 * - Encryption counts, job progress: atomic increments in the transaction that did the work.
 * - Subject rows (insertTokens, changeConsent, eraseSubject): one row per (tenant, subject HMAC),
 *   claimed by an upsert (INSERT … ON CONFLICT DO UPDATE, a row lock held to commit) or locked
 *   `FOR UPDATE` by an erasure, always before the subject's records are touched; the primary key
 *   decides between two first claims (the second waits, then updates the winner's row).
 * - Audit subject index (audit_subjects): written by the audit append primitive, in the
 *   transaction of the audit row, for every handle the row names.
 * - Checkpoint and segments: the checkpoint is one row replaced by an upsert (last writer wins:
 *   it is derived state); a prune takes the chain lock first, then checks its segment against the
 *   rows still stored, so appends and other prunes wait.
 *
 * Reads take no locks and see committed data only (one statement's snapshot; the batch reads
 * findTokens, findDeterministic and auditRows with tenants read one snapshot). A caller may assume
 * nothing it read stays true: every write re-checks what it depends on inside its transaction.
 * Unreachable or failing storage is StoreUnavailableError (503) from every method.
 */
export interface VaultStore {
  /** One trivial statement: the store answers. */
  ping(): Promise<void>;
  /** Closes the connection(s); in-flight calls may fail with StoreUnavailableError. */
  close(): Promise<void>;

  /** The active version of (tenant, purpose). A plain read: may be stale by the time it is used (writes re-check). */
  activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined>;
  /** One key version; a plain read. */
  dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined>;
  /**
   * Inserts a key version; false when that version already exists (another process won). One
   * statement: the primary key decides between concurrent creators, no lock is taken beforehand.
   */
  insertDataKey(record: DataKeyRecord): Promise<boolean>;

  /**
   * Stores the records atomically with the audit row; returns the token of each record in order.
   * Before a deterministic record is inserted, `hooks.resolveExisting` sees every stored record of
   * its tenant, type and fingerprint (records of this batch included) and decides; the store
   * keeps no rule of its own about them. A token already used in the record's tenant asks
   * `hooks.retokenize` for a new one (tokens of other tenants never collide), up to
   * MAX_TOKEN_ATTEMPTS, then TokenCollisionError. The audit entry's tokens are set to the returned
   * tokens, and the replaced ones named in its reason.
   * Throws StaleDataKeyError (and writes nothing) unless every record's key version is still the
   * active one at commit, so no record can land under a key that is being retired. Whatever a hook
   * throws is rethrown, with nothing written.
   * Each subject of the batch gets its subject row (a new random handle) in the same transaction,
   * and the `consents` purposes are added to its consented set; the audit entry's subjects are set
   * to the handles of the batch's subjects.
   * Locks: each distinct data-key row `FOR SHARE`; each subject row of the batch (an upsert, held to
   * commit, taken before any record is written: see eraseSubject); the deleted (replaced) token
   * rows; the chain head.
   * Writes: records, subject rows, replaced records' deletion, record counts and encryption counts (every seal,
   * retries and subject ids included), the audit row. Retried inside the store when a concurrent
   * first insertion of the same deterministic value wins (the hooks are then called again, so they
   * must not assume they run once).
   */
  insertTokens(records: TokenRecord[], audit: PendingAudit, hooks: InsertHooks, consents?: readonly SubjectConsent[]): Promise<string[]>;
  /**
   * Every record each token string names, in any tenant (a string may name one record per tenant),
   * each with its subject's row (handle and consent) read in the same statement;
   * tokens that name none are absent. Callers choose among them by the tenants they may touch.
   * One snapshot for the whole batch; no lock.
   */
  findTokens(tokens: readonly string[]): Promise<Map<string, StoredRecord[]>>;
  /**
   * Every record of the tenant with one of these (type, fingerprint) pairs, whatever its format
   * and preserve. One snapshot, no lock: what it returns is vetted by the caller, and the write
   * that follows sees the same records again in resolveExisting, inside its transaction.
   */
  findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]>;
  /**
   * Deletes a token of the tenant with its audit row; false (and no row) when there is none.
   * The delete locks the row: of two concurrent deletes one returns true, and the record count
   * drops once. Deleted data is also purged from any log the store keeps (SQLite: the WAL).
   */
  deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean>;

  /** The subject row of (tenant, subject HMAC); a plain read (consent is read on every use, never cached). */
  subject(tenant: string, subjectHash: Buffer): Promise<SubjectRow | undefined>;
  /**
   * A page of the subject's records (with its subject row), in token order after `afterToken`.
   * A plain read, one statement: pages are separate snapshots, so a record written or erased
   * between pages may be seen or missed, never seen twice.
   */
  subjectRecords(tenant: string, subjectHash: Buffer, afterToken: string, limit: number): Promise<StoredRecord[]>;
  /**
   * The stored audit rows the audit_subjects index lists under this handle, in seq order after
   * `afterSeq` (an index range joined to the rows; archived rows are absent). A plain read.
   */
  auditRowsOfSubject(handle: Buffer, afterSeq: number, limit: number): Promise<AuditRow[]>;
  /**
   * Adds and removes consented purposes of a subject (creating its row, with a new handle, when it
   * has none), with the audit row, which names the handle (the store sets entry.subjects). A
   * withdrawal from a subject without recorded consent leaves the empty set (nothing consented).
   * Returns the row as committed.
   * Locks: the subject row (an upsert, held to commit), so concurrent changes and tokenizes of the
   * subject apply one after the other, none lost; then the chain head.
   */
  changeConsent(tenant: string, subjectHash: Buffer, change: ConsentChange, now: number, audit: PendingAudit): Promise<SubjectRow>;
  /**
   * Erases a subject in one transaction: every record of (tenant, subject HMAC), its subject row and
   * the audit_subjects entries of its handle, with the audit row (the caller's entry, counts only:
   * no subject named). Record counts drop by the records deleted, per key version. Returns how many
   * records were deleted (0 and no subject row: nothing to erase; still audited). Deleted data is
   * also purged from any log the store keeps (SQLite: the WAL).
   * Locks: the subject row `FOR UPDATE` first, then the records (deleted by one statement run after
   * the lock, so it sees every record committed before it):
   * - a concurrent tokenize of the subject claims the subject row before inserting its records:
   *   it either committed first (its records are erased too) or waits and, the row gone, creates a
   *   new subject row with a new handle (its records belong to the new row: written after the erasure);
   * - a re-encryption swap of one of its records holds that row: the delete waits for it and deletes
   *   the swapped record (counted at its new version), or the swap finds no record and skips it;
   * - of two erasures one deletes; the other waits for the lock, then finds no row and deletes nothing;
   * - a purge of the subject's expired records skips the rows the erasure holds, and the erasure waits
   *   for rows the purge holds and then finds them gone: each record is deleted and counted once.
   */
  eraseSubject(tenant: string, subjectHash: Buffer, audit: PendingAudit): Promise<{ records: number }>;

  /** Every data key record (all tenants, purposes and versions); a plain read. */
  listDataKeys(): Promise<DataKeyRecord[]>;
  /**
   * How many records each (tenant, data key version) encrypts; key `${tenant}/${version}`. Kept by
   * every write that inserts, deletes or re-encrypts records (in its transaction), never counted.
   * Versions without records are absent. A plain read of committed counts.
   */
  recordCountsByKey(): Promise<Map<string, number>>;
  /**
   * Demotes the active key of (tenant, purpose) to decrypt-only and makes `next` active, with its
   * audit row. False (nothing written) if `next.version` exists, or if the active version is not
   * `expectedActive` when that is given (someone else rotated first): of concurrent rotations
   * expecting one version, exactly one succeeds.
   * Locks: the key family of (tenant, purpose); the active key row `FOR UPDATE` (so it waits for
   * inserts and re-encryptions holding it `FOR SHARE`); the chain head.
   */
  rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean>;
  /**
   * Replaces a key's wrapping only if it is still wrapped exactly as `from` and not destroyed.
   * One conditional UPDATE (it re-checks the row's latest version under its row lock), no audit row.
   */
  updateWrappedKey(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: { kekId: string; wrapped: Buffer },
    to: { kekId: string; wrapped: Buffer },
  ): Promise<boolean>;
  /**
   * Moves a key from one state to another (destroy also drops its wrapped material), with its
   * audit row; false (nothing written) when it is not in `from`. Retiring or destroying a data key
   * that records still use throws KeyInUseError, counted in the same transaction after the lock:
   * a retire never succeeds while a record at that version exists.
   * Locks: the key family; the key row `FOR UPDATE`; the chain head. Destroyed key material is also
   * purged from any log the store keeps.
   */
  changeDataKeyState(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: DataKeyState,
    to: DataKeyState,
    audit: PendingAudit,
  ): Promise<boolean>;

  /**
   * Records of a tenant not encrypted under `activeVersion` or sealed with a binding below
   * `binding` (a higher one, such as a subject-keyed record's, is current), in token order after
   * `afterToken`. A plain read: the swap re-checks each record.
   */
  recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]>;
  /**
   * Swaps re-encrypted ciphertexts in (with their new binding and preserve), each only if the record
   * (tenant, token) still has its old key version and binding, and adds the batch to the job's
   * progress, in one transaction. Returns how many were swapped.
   * Throws StaleDataKeyError (writing nothing) if the target version stopped being active.
   * Locks: each target data-key row `FOR SHARE`; each swapped token row (by its conditional
   * UPDATE, so two jobs never both swap one record); the job row.
   */
  replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number>;

  /** Inserts a job (its id is unique). */
  insertJob(job: JobRecord): Promise<void>;
  job(id: string): Promise<JobRecord | undefined>;
  /** Sets the given fields of a job (one UPDATE; the last writer wins field by field). */
  updateJob(id: string, fields: JobFields): Promise<void>;
  /** Jobs still `running`, oldest first. */
  unfinishedJobs(): Promise<JobRecord[]>;
  /**
   * Takes or renews the lease of a running job for `owner` (a vault instance), until `leaseMs`
   * from now by the database's clock (instances' clocks may differ): true when `owner` holds it
   * now. Taken only if it is free, expired, or already `owner`'s; false for a job that is not
   * running. One conditional UPDATE: its row lock decides between two instances claiming at once
   * (the second re-reads the row the first wrote), so at most one instance holds a live lease.
   */
  leaseJob(id: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Gives up `owner`'s lease of a job (a clean stop), so that another instance may take it at once. */
  releaseJob(id: string, owner: string): Promise<void>;

  /**
   * Deletes up to `limit` records whose expiry is at or before `now` (ms), earliest expiry first,
   * in one transaction with the record counts (each deleted record off its key version's count)
   * and one audit row that carries counts only: its `types` and a `reason` listing how many
   * records of each tenant and type were purged (the returned counts), never a token or subject.
   * Nothing expired: returns [] and writes nothing (no audit row). Found through the expiry index,
   * never a table scan. Deleted data is also purged from any log the store keeps (SQLite: the WAL).
   * Locks: each deleted token row, taken by the delete, skipping rows another transaction holds
   * (`FOR UPDATE SKIP LOCKED`): a concurrent purge deletes other rows, and a tokenize replacing
   * an expired deterministic record keeps it; the counts come from the rows actually deleted, so
   * no record is deleted or counted twice. Then the chain head.
   */
  purgeExpired(now: number, limit: number, audit: PendingAudit): Promise<ExpiredCount[]>;
  /** Records expired at `now` (ms), per tenant and type, read through the expiry index; a plain read, no lock. */
  expiredCounts(now: number): Promise<ExpiredCount[]>;
  /**
   * Takes or renews the lease named `name` (a vault-wide background task, e.g. the purge) for
   * `owner` (a vault instance), until `leaseMs` from now by the database's clock: true when `owner`
   * holds it now. Taken only if nobody holds it, it expired, or it is already `owner`'s. One
   * upsert, conditional under the row lock (or the unique index for the first claim): of two
   * instances claiming at once, one holds it. No audit row.
   */
  acquireLease(name: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Gives up `owner`'s lease (a finished run or a clean stop), so that another instance may take it at once. */
  releaseLease(name: string, owner: string): Promise<void>;

  /**
   * Appends an audit row at the head of the chain (seq = head + 1, chained from the head's hash,
   * sealed by `audit.sealer`); AuditUnavailableError when it cannot be written. Appends from every
   * connection are serialised by the chain lock: no gap, no duplicate seq, no fork.
   */
  appendAudit(audit: PendingAudit): Promise<AuditRow>;
  /** Audit rows after a sequence number, in seq order; with `tenants`, only rows of those tenants. */
  auditRows(afterSeq: number, limit: number, tenants?: readonly string[]): Promise<AuditRow[]>;
  /** The newest audit row's seq and hash (one read); undefined when no row is stored. */
  auditHead(): Promise<AuditHead | undefined>;
  /** The stored verification checkpoint exactly as written; checking its MAC is the caller's job. */
  auditCheckpoint(): Promise<AuditCheckpoint | undefined>;
  /**
   * Replaces the checkpoint (there is at most one), in a transaction of its own, without an audit
   * row: it is derived state that any verification can rebuild. Concurrent savers: the last wins.
   */
  saveAuditCheckpoint(checkpoint: AuditCheckpoint): Promise<void>;
  /** Every archived segment record, in sequence order, exactly as written (MACs are the caller's to check). */
  auditSegments(): Promise<AuditSegment[]>;
  /**
   * Prunes an archived segment, in one transaction with the segment's record and its audit row.
   * Only when, inside that transaction, the segment follows the last recorded one (or starts at
   * row 1 when there is none), every row fromSeq..throughSeq is still stored, the first still
   * chains from `prevHash` and the last still has `headHash`; otherwise returns false and writes
   * nothing. Rows after the segment keep their numbers; an append to an emptied log continues from
   * the last segment. Locks: the chain head, first.
   */
  pruneAuditSegment(segment: AuditSegment, audit: PendingAudit): Promise<boolean>;
}

/**
 * The data key a batch was sealed under stopped being active before the batch committed (a
 * rotation won the race); the caller seals again under the new active key.
 */
export class StaleDataKeyError extends InternalError {
  constructor() {
    super('key_unavailable', 'the data key is no longer active', 'Keys are being rotated; retry the request.');
    this.name = 'StaleDataKeyError';
  }
}

export class KeyInUseError extends InternalError {
  constructor(readonly records: number) {
    super('key_in_use', `${records} records still use this key version`);
    this.name = 'KeyInUseError';
  }
}

export class TokenCollisionError extends InternalError {
  constructor() {
    super('token_collision', 'could not allocate a unique token');
    this.name = 'TokenCollisionError';
  }
}

/** The store cannot be used (locked, disk full, connection lost). Maps to 503. */
export class StoreUnavailableError extends InternalError {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super('store_unavailable', message);
    this.name = 'StoreUnavailableError';
  }
}

/** The audit row was not written; callers must refuse the request (fail closed). */
export class AuditUnavailableError extends InternalError {
  constructor(override readonly cause: unknown) {
    super('audit_unavailable', 'audit log cannot be written');
    this.name = 'AuditUnavailableError';
  }
}

export const GENESIS_HASH = Buffer.alloc(32);
export const MAX_TOKEN_ATTEMPTS = 10;
