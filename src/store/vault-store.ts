import type { DataType, Preserve, TokenFormat } from '../domain/types';
import type { KeyPurpose } from '../crypto/key-provider';

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
  /** Which columns the ciphertext's AAD covers: 1 (tenant, type, token, key version) or 2 (all; see record-crypto). */
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

export type DataKeyState = 'active' | 'decrypt-only' | 'retired' | 'destroyed';

export interface DataKeyRecord {
  tenant: string;
  purpose: KeyPurpose;
  version: number;
  state: DataKeyState;
  kekId: string;
  wrapped: Buffer | null;
  createdAt: number;
  encryptions: number;
}

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
  /** Keyed HMACs (hex) of the data subjects involved, never the ids themselves. */
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
 */
export type ResolveExisting = (index: number, existing: TokenRecord[]) => { reuse: string } | { replace: string[] } | 'insert';

export interface InsertHooks {
  retokenize: Retokenize;
  resolveExisting: ResolveExisting;
}

/**
 * Persistence seam. Every write that changes records also appends its audit row in the same
 * transaction, so a record never exists without the audit of its creation, nor the reverse.
 */
export interface VaultStore {
  ping(): Promise<void>;
  close(): Promise<void>;

  activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined>;
  dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined>;
  /** Inserts a key version; false when that version already exists (another process won). */
  insertDataKey(record: DataKeyRecord): Promise<boolean>;

  /**
   * Stores the records atomically with the audit row; returns the token of each record in order.
   * Before a deterministic record is inserted, `hooks.resolveExisting` sees every stored record of
   * its tenant, type and fingerprint (records of this batch included) and decides; the store
   * keeps no rule of its own about them. A token already used in the record's tenant asks
   * `hooks.retokenize` for a new one (tokens of other tenants never collide). The audit entry's
   * tokens are set to the returned tokens, and the replaced ones named in its reason.
   * Throws StaleDataKeyError (and writes nothing) unless every record's key version is still the
   * active one at commit, so no record can land under a key that is being retired. Whatever a hook
   * throws is rethrown, with nothing written.
   */
  insertTokens(records: TokenRecord[], audit: PendingAudit, hooks: InsertHooks): Promise<string[]>;
  /**
   * Every record each token string names, in any tenant (a string may name one record per tenant);
   * tokens that name none are absent. Callers choose among them by the tenants they may touch.
   */
  findTokens(tokens: readonly string[]): Promise<Map<string, TokenRecord[]>>;
  /** Every record of the tenant with one of these (type, fingerprint) pairs, whatever its format and preserve. */
  findDeterministic(tenant: string, keys: ReadonlyArray<{ type: DataType; fingerprint: Buffer }>): Promise<TokenRecord[]>;
  /** Deletes a token of the tenant with its audit row; false (and no row) when there is none. */
  deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean>;

  /** Every data key record (all tenants, purposes and versions). */
  listDataKeys(): Promise<DataKeyRecord[]>;
  /**
   * How many records each (tenant, data key version) encrypts; key `${tenant}/${version}`. Kept by
   * every write that inserts, deletes or re-encrypts records (in its transaction), never counted.
   */
  recordCountsByKey(): Promise<Map<string, number>>;
  /**
   * Demotes the active key of (tenant, purpose) to decrypt-only and makes `next` active, with its
   * audit row. False (nothing written) if `next.version` exists, or if the active version is not
   * `expectedActive` when that is given (someone else rotated first).
   */
  rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean>;
  /** Replaces a key's wrapping only if it is still wrapped exactly as `from` and not destroyed. */
  updateWrappedKey(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: { kekId: string; wrapped: Buffer },
    to: { kekId: string; wrapped: Buffer },
  ): Promise<boolean>;
  /**
   * Moves a key from one state to another (destroy also drops its wrapped material), with its
   * audit row. Retiring or destroying a data key that records still use throws KeyInUseError,
   * checked in the same transaction.
   */
  changeDataKeyState(
    key: { tenant: string; purpose: KeyPurpose; version: number },
    from: DataKeyState,
    to: DataKeyState,
    audit: PendingAudit,
  ): Promise<boolean>;

  /**
   * Records of a tenant not encrypted under `activeVersion` or not sealed with `binding`, in token
   * order after `afterToken`.
   */
  recordsBehind(tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): Promise<TokenRecord[]>;
  /**
   * Swaps re-encrypted ciphertexts in (with their new binding and preserve), each only if the record
   * (tenant, token) still has its old key version and binding, and adds the batch to the job's
   * progress, in one transaction. Returns how many were swapped.
   * Throws StaleDataKeyError (writing nothing) if the target version stopped being active.
   */
  replaceCiphertexts(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Promise<number>;

  insertJob(job: JobRecord): Promise<void>;
  job(id: string): Promise<JobRecord | undefined>;
  updateJob(
    id: string,
    fields: Partial<Pick<JobRecord, 'state' | 'total' | 'done' | 'failed' | 'updatedAt' | 'finishedAt' | 'error'>>,
  ): Promise<void>;
  unfinishedJobs(): Promise<JobRecord[]>;

  appendAudit(audit: PendingAudit): Promise<AuditRow>;
  /** Audit rows after a sequence number; with `tenants`, only rows of those tenants. */
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
   * the last segment.
   */
  pruneAuditSegment(segment: AuditSegment, audit: PendingAudit): Promise<boolean>;
}

/**
 * The data key a batch was sealed under stopped being active before the batch committed (a
 * rotation won the race); the caller seals again under the new active key.
 */
export class StaleDataKeyError extends Error {
  constructor() {
    super('the data key is no longer active');
    this.name = 'StaleDataKeyError';
  }
}

export class KeyInUseError extends Error {
  constructor(readonly records: number) {
    super(`${records} records still use this key version`);
    this.name = 'KeyInUseError';
  }
}

export class TokenCollisionError extends Error {
  constructor() {
    super('could not allocate a unique token');
    this.name = 'TokenCollisionError';
  }
}

/** The store cannot be used (locked, disk full, connection lost). Maps to 503. */
export class StoreUnavailableError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/** The audit row was not written; callers must refuse the request (fail closed). */
export class AuditUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super('audit log cannot be written');
    this.name = 'AuditUnavailableError';
  }
}

export const GENESIS_HASH = Buffer.alloc(32);
export const MAX_TOKEN_ATTEMPTS = 10;
