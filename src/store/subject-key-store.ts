/**
 * One data subject's key (crypto-shredding), as stored: wrapped, never in plaintext. It lives
 * outside the vault's database, so that destroying it reaches every copy of that database.
 */
export interface SubjectKeyRecord {
  tenant: string;
  /** The keyed HMAC of the subject id (as on the subject's records), never the id itself. */
  subjectHash: Buffer;
  /** Version of the tenant's fingerprint key whose derived wrapping key wraps this key. */
  wrapVersion: number;
  /** nonce | tag | ciphertext of the 32-byte key. */
  wrapped: Buffer;
  createdAt: number;
}

/**
 * Persistence seam of the per-subject keys, one row per (tenant, subject HMAC).
 *
 * ## Transactions and locks
 * Each method is one transaction that commits durably before its promise resolves, or writes
 * nothing. Several vault instances (or processes) may share the store:
 * - Get-or-create (getOrCreate, a batch of candidates): the primary key (tenant, subject_hash)
 *   decides between concurrent creators. The insert does nothing for a key that exists (`ON
 *   CONFLICT DO NOTHING`; on PostgreSQL it waits for a concurrent inserter of the same key to commit
 *   or roll back), then the rows are read: every creator gets the one stored key. A row destroyed
 *   between the insert and the read is inserted again (up to MAX_GET_OR_CREATE_ATTEMPTS), so a
 *   subject never ends without a key. SQLite runs both in one BEGIN IMMEDIATE transaction (its
 *   write lock serialises them); PostgreSQL runs each as one statement for the whole batch.
 * - Destroy: one DELETE; of two concurrent destroys one returns true. The deleted key is then purged
 *   from any log the store keeps (SQLite: the WAL is checkpointed and truncated, and secure_delete
 *   zeroes the freed page), so the file holds no copy of it.
 * - get: a plain read of committed data, no lock.
 * Unreachable or failing storage is StoreUnavailableError (503) from every method.
 */
export interface SubjectKeyStore {
  /** One trivial statement: the store answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
  /**
   * The stored key of each candidate's (tenant, subjectHash), in order, storing the candidate first
   * where there is none (one durable commit for the batch; candidates may repeat a key).
   */
  getOrCreate(candidates: readonly SubjectKeyRecord[]): Promise<SubjectKeyRecord[]>;
  /** The stored key, or undefined (never created, or destroyed). */
  get(tenant: string, subjectHash: Buffer): Promise<SubjectKeyRecord | undefined>;
  /** The stored key of each (tenant, subject HMAC), in order, as `get` would answer it: one read for all of them. */
  getMany(keys: ReadonlyArray<{ tenant: string; subjectHash: Buffer }>): Promise<Array<SubjectKeyRecord | undefined>>;
  /** Deletes the key and purges it from the store's logs; false when there was none. */
  destroy(tenant: string, subjectHash: Buffer): Promise<boolean>;
}

export const MAX_GET_OR_CREATE_ATTEMPTS = 5;

/** A stored row as either database returns it (pg gives BIGINT columns as strings). */
export interface SubjectKeyRow {
  tenant: string;
  subject_hash: Buffer;
  wrap_version: number | string;
  wrapped: Buffer;
  created_at: number | string;
}

export function toSubjectKeyRecord(row: SubjectKeyRow): SubjectKeyRecord {
  return {
    tenant: row.tenant,
    subjectHash: row.subject_hash,
    wrapVersion: Number(row.wrap_version),
    wrapped: row.wrapped,
    createdAt: Number(row.created_at),
  };
}

/** Lookup key of a (tenant, subject HMAC) pair. */
export function subjectKeyId(tenant: string, subjectHash: Buffer): string {
  return `${tenant}\u0000${subjectHash.toString('hex')}`;
}
