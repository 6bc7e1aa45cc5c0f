import type { KeyPurpose } from '../../domain/keys';
import type { DataType, Preserve, TokenFormat } from '../../domain/types';
import { decodeAuditList, encodeAuditList } from '../audit-list-codec';
import type { AuditRow, DataKeyRecord, DataKeyState, JobRecord, TokenRecord } from '../vault-store';

/** How records, keys, jobs and audit rows look as SQLite rows, and back. */

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
  created_at: number;
  expires_at: number | null;
}

export interface DataKeyRow {
  tenant: string;
  purpose: string;
  version: number;
  state: string;
  kek_id: string;
  wrapped: Buffer | null;
  created_at: number;
  encryptions: number;
}

export interface AuditDbRow {
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

export interface JobRow {
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

export function toJob(row: JobRow): JobRecord {
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

export function toJobParams(job: JobRecord) {
  return { ...job, tenants: JSON.stringify(job.tenants) };
}

export function toTokenParams(r: TokenRecord) {
  return { ...r, metadata: r.metadata ? JSON.stringify(r.metadata) : null };
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
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

export function toDataKey(row: DataKeyRow): DataKeyRecord {
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

export function toAuditParams(row: AuditRow) {
  return { ...row, types: encodeAuditList(row.types), tokens: encodeAuditList(row.tokens), subjects: encodeAuditList(row.subjects) };
}

export function toAuditRow(row: AuditDbRow): AuditRow {
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
