import type { KeyPurpose } from '../domain/keys';
import type { DataType, Preserve, TokenFormat } from '../domain/types';
import { decodeAuditList } from './audit-list-codec';
import type { AuditRow, DataKeyRecord, DataKeyState, JobFields, JobRecord, StoredRecord, SubjectRow, TokenRecord } from './vault-store';

/**
 * Rows as both stores' drivers return them, and the records they map to. Whole numbers that
 * PostgreSQL keeps in BIGINT columns arrive from pg as strings, so every such column goes through
 * Number(); audit lists are JSON text, or (SQLite) deflated JSON (audit-list-codec.ts).
 */

/** A whole-number column: a number from SQLite, a string from a PostgreSQL BIGINT. */
type WholeNumber = number | string;

export interface TokenRow {
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
  created_at: WholeNumber;
  expires_at: WholeNumber | null;
}

/** Records with their subject's row, in one statement (both stores; add a WHERE on `t`). */
export const RECORDS_WITH_SUBJECT = `SELECT t.*, s.handle AS subject_handle, s.purposes AS subject_purposes
  FROM tokens t LEFT JOIN subjects s ON s.tenant = t.tenant AND s.subject_hash = t.subject_hash`;

/** A token row joined to its subject's row (null columns: no subject row). */
export interface StoredTokenRow extends TokenRow {
  subject_handle: Buffer | null;
  subject_purposes: string | null;
}

export interface SubjectDbRow {
  handle: Buffer;
  purposes: string | null;
}

export interface DataKeyRow {
  tenant: string;
  purpose: string;
  version: number;
  state: string;
  kek_id: string;
  wrapped: Buffer | null;
  created_at: WholeNumber;
  encryptions: WholeNumber;
}

export interface AuditDbRow {
  seq: WholeNumber;
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

export interface JobRow {
  id: string;
  kind: string;
  tenants: string;
  state: string;
  total: WholeNumber;
  done: WholeNumber;
  failed: WholeNumber;
  requested_by: string;
  created_at: WholeNumber;
  updated_at: WholeNumber;
  finished_at: WholeNumber | null;
  error: string | null;
}

/** The column of each job field that updateJob may set. */
export const JOB_COLUMNS: Record<keyof JobFields, string> = {
  state: 'state',
  total: 'total',
  done: 'done',
  failed: 'failed',
  updatedAt: 'updated_at',
  finishedAt: 'finished_at',
  error: 'error',
};

export function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind as JobRecord['kind'],
    tenants: JSON.parse(row.tenants),
    state: row.state as JobRecord['state'],
    total: Number(row.total),
    done: Number(row.done),
    failed: Number(row.failed),
    requestedBy: row.requested_by,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
    error: row.error,
  };
}

export function toTokenRecord(row: TokenRow): TokenRecord {
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
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
  };
}

export function toSubjectRow(row: SubjectDbRow): SubjectRow {
  return { handle: row.handle, purposes: row.purposes === null ? null : JSON.parse(row.purposes) };
}

export function toStoredRecord(row: StoredTokenRow): StoredRecord {
  const subjectRow = row.subject_handle ? toSubjectRow({ handle: row.subject_handle, purposes: row.subject_purposes }) : null;
  return { ...toTokenRecord(row), subjectRow };
}

export function toDataKey(row: DataKeyRow): DataKeyRecord {
  return {
    tenant: row.tenant,
    purpose: row.purpose as KeyPurpose,
    version: row.version,
    state: row.state as DataKeyState,
    kekId: row.kek_id,
    wrapped: row.wrapped,
    createdAt: Number(row.created_at),
    encryptions: Number(row.encryptions),
  };
}

export function toAuditRow(row: AuditDbRow): AuditRow {
  return {
    seq: Number(row.seq),
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
