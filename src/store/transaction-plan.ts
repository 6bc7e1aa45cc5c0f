import type { KeyPurpose } from '../domain/keys';
import type { DataType } from '../domain/types';
import type {
  AuditHead,
  AuditRow,
  AuditSegment,
  DataKeyRecord,
  DataKeyState,
  ReencryptedRecord,
  SubjectRow,
  TokenRecord,
} from './vault-store';

export interface KeyRef {
  tenant: string;
  purpose: KeyPurpose;
  version: number;
}

/** What inserting one record did: stored it, found its token taken in its tenant, or found its identity (fingerprint) taken. */
type TokenInsert = 'inserted' | 'token-taken' | 'identity-taken';

/**
 * The primitive reads and writes a store offers inside one write transaction. SQL and locking live
 * behind them; the decisions (which to call, in which order, what the answers mean) are the plans'
 * in src/store/rules/. Each primitive names the lock a store with concurrent writers takes (the
 * SQLite store holds the database's single write lock for the whole transaction instead). Locks are
 * always taken in this order, so transactions cannot deadlock on each other: key family, data-key
 * rows, subject rows, token rows, job row, audit chain head (always last).
 */
export interface TransactionOps {
  /**
   * Serialises the transactions that create versions or change states of one (tenant, purpose):
   * rotations and state changes. (PostgreSQL: a transaction-scoped advisory lock on the pair, since
   * a row lock cannot cover a version that does not exist yet.) Inserts and re-encryption do not take it.
   */
  lockKeyFamily(tenant: string, purpose: KeyPurpose): void;
  /**
   * One key version, read with a row lock held to commit: `share` (inserts, re-encryption: a
   * concurrent rotate, retire or destroy of it waits for this transaction) or `update` (state changes).
   * Under READ COMMITTED the locked read returns the row's latest committed state.
   */
  lockDataKey(key: KeyRef, mode: 'share' | 'update'): DataKeyRecord | undefined;
  /** The active version of (tenant, purpose), locked for update; only called under lockKeyFamily. */
  lockActiveDataKey(tenant: string, purpose: KeyPurpose): DataKeyRecord | undefined;
  /** Inserts a key version; false when that version already exists. */
  insertDataKey(record: DataKeyRecord): boolean;
  /** Makes the active version of (tenant, purpose) decrypt-only. */
  demoteActiveDataKey(tenant: string, purpose: KeyPurpose): void;
  /** Moves a key from one state to another (destroy also drops its wrapped material); false when it is not in `from`. */
  setDataKeyState(key: KeyRef, from: DataKeyState, to: DataKeyState): boolean;
  /** Adds to a data key's encryption count (an atomic increment). */
  addEncryptions(tenant: string, version: number, seals: number): void;

  /** Records of a tenant encrypted under a data key version, counted from the records themselves. */
  countRecordsAt(tenant: string, version: number): number;
  /** Adds to the kept record count of (tenant, version), creating it at need (an atomic upsert-increment). */
  addRecordCount(tenant: string, version: number, delta: number): void;
  /** Every record of the tenant with this (type, fingerprint), this transaction's own inserts included. */
  recordsByFingerprint(tenant: string, type: DataType, fingerprint: Buffer): TokenRecord[];
  /**
   * Inserts a record unless its token is taken in its tenant (`token-taken`) or a record of its
   * deterministic identity exists (`identity-taken`: on a database with concurrent writers, one
   * committed after this transaction looked; the insert then waits for that writer, as a unique
   * index does, instead of reading past it). Neither leaves anything written.
   */
  insertRecord(record: TokenRecord): TokenInsert;
  /** Deletes a record of the tenant (its row locked by the delete); the deleted record's key version, if any. */
  deleteRecord(tenant: string, token: string): { keyVersion: number } | undefined;
  /**
   * Deletes up to `limit` records expired at `now`, earliest expiry first, through the expiry
   * index; rows another transaction holds locked are skipped (PostgreSQL: FOR UPDATE SKIP LOCKED),
   * not waited for. Returns what it deleted (the rows the delete reported), for the counts.
   */
  deleteExpiredRecords(now: number, limit: number): Array<{ tenant: string; type: DataType; keyVersion: number }>;
  /** Swaps one re-encrypted ciphertext in, only if the record still has its old key version and binding. */
  replaceCiphertext(update: ReencryptedRecord): boolean;
  /**
   * The subject row of (tenant, subject HMAC), inserted with `handle` when there is none; locked to
   * commit either way (an upsert: of two first claims the second waits and gets the winner's row).
   */
  claimSubject(tenant: string, subjectHash: Buffer, handle: Buffer, now: number): SubjectRow;
  /** The subject row locked `FOR UPDATE`, if there is one. */
  lockSubject(tenant: string, subjectHash: Buffer): SubjectRow | undefined;
  /** Replaces a (claimed or locked) subject's consented purposes. */
  setSubjectPurposes(tenant: string, subjectHash: Buffer, purposes: readonly string[], now: number): void;
  /** Deletes every record of the subject (each row locked by the delete); their key versions. */
  deleteRecordsOfSubject(tenant: string, subjectHash: Buffer): { keyVersion: number }[];
  /** Deletes the subject row and the audit_subjects entries of its handle. */
  deleteSubject(tenant: string, subjectHash: Buffer, handle: Buffer): void;
  /** Adds to a job's progress (atomic increments). */
  addJobProgress(jobId: string, done: number, failed: number, now: number): void;

  /**
   * Locks the audit chain head until commit, then reads the newest stored row. Appends are
   * serialised by this lock: (PostgreSQL: a transaction-scoped advisory lock, or FOR UPDATE on a
   * one-row head table). Taken last, right before the row is written, so it is held briefly.
   */
  lockAuditHead(): AuditHead | undefined;
  /** The last archived segment's end, where an emptied log continues from. */
  lastAuditSegment(): AuditHead | undefined;
  /**
   * Writes an audit row and its audit_subjects entries (one per subject handle it names, see
   * subjectHandlesOf); a failure (of any kind) must roll the transaction back.
   */
  insertAuditRow(row: AuditRow): void;
  /** How many audit rows are stored with seq in fromSeq..throughSeq. */
  countAuditRows(fromSeq: number, throughSeq: number): number;
  /** The chain link of one stored row. */
  auditLink(seq: number): { prevHash: Buffer; hash: Buffer } | undefined;
  deleteAuditRows(fromSeq: number, throughSeq: number): void;
  insertAuditSegment(segment: AuditSegment): void;
}

/** One primitive call a plan asks its store to make. */
type Step = { [K in keyof TransactionOps]: { op: K; args: Parameters<TransactionOps[K]> } }[keyof TransactionOps];

/**
 * A write transaction's logic, written once for every store: a generator that yields the
 * primitives it needs and receives their results. The SQLite store runs it synchronously inside
 * its transaction (runPlan); a store with an asynchronous driver awaits each step (runPlanAsync).
 * A plan keeps no state outside itself, so a store may run a fresh one again after a retryable
 * failure (see ConcurrentWriteError).
 */
export type Plan<T> = Generator<Step, T, unknown>;

/** Asks the store for one primitive: `const key = yield* ask('lockDataKey', ref, 'share')`. */
export function* ask<K extends keyof TransactionOps>(
  op: K,
  ...args: Parameters<TransactionOps[K]>
): Generator<Step, ReturnType<TransactionOps[K]>, unknown> {
  return (yield { op, args } as Step) as ReturnType<TransactionOps[K]>;
}

/** Runs a plan against synchronous primitives; a primitive's failure is thrown into the plan. */
export function runPlan<T>(plan: Plan<T>, ops: TransactionOps): T {
  let next = plan.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = call(ops, next.value);
    } catch (err) {
      next = plan.throw(err);
      continue;
    }
    next = plan.next(result);
  }
  return next.value;
}

export type AsyncTransactionOps = {
  [K in keyof TransactionOps]: (...args: Parameters<TransactionOps[K]>) => Promise<ReturnType<TransactionOps[K]>>;
};

/** Runs a plan against asynchronous primitives (one statement at a time, in one transaction). */
export async function runPlanAsync<T>(plan: Plan<T>, ops: AsyncTransactionOps): Promise<T> {
  let next = plan.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = await call(ops, next.value);
    } catch (err) {
      next = plan.throw(err);
      continue;
    }
    next = plan.next(result);
  }
  return next.value;
}

function call(ops: TransactionOps | AsyncTransactionOps, step: Step): unknown {
  return (ops[step.op] as (...args: unknown[]) => unknown).apply(ops, step.args);
}

/**
 * The transaction lost a race with a concurrent writer that a lock could not prevent (a unique
 * index conflict, a serialization failure or deadlock): it wrote nothing, and the store runs the
 * whole transaction again, a bounded number of times, before giving up with
 * StoreUnavailableError. Callers never see it.
 */
export class ConcurrentWriteError extends Error {
  constructor(reason: string) {
    super(`concurrent write: ${reason}`);
    this.name = 'ConcurrentWriteError';
  }
}
