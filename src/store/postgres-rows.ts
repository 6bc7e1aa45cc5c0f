import type { KeyPurpose } from '../domain/keys';
import type { DataType, Preserve, TokenFormat } from '../domain/types';
import { AuditRow, DataKeyRecord, DataKeyState, JobRecord, TokenRecord } from './vault-store';

/** Rows as the pg driver returns them: BIGINT columns arrive as strings, BYTEA as Buffers. */
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
  created_at: string;
  expires_at: string | null;
}

export interface DataKeyRow {
  tenant: string;
  purpose: string;
  version: number;
  state: string;
  kek_id: string;
  wrapped: Buffer | null;
  created_at: string;
  encryptions: string;
}

export interface AuditDbRow {
  seq: string;
  ts: string;
  request_id: string;
  principal: string;
  tenant: string | null;
  action: string;
  types: string;
  tokens: string;
  purpose: string | null;
  outcome: string;
  reason: string | null;
  subjects: string;
  key_version: number;
  prev_hash: Buffer;
  hash: Buffer;
}

export interface JobRow {
  id: string;
  kind: string;
  tenants: string;
  state: string;
  total: string;
  done: string;
  failed: string;
  requested_by: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  error: string | null;
}

/** The columns of `tokens`, in the order the insert statements name them. */
export const TOKEN_COLUMNS =
  'token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, fingerprint, subject_hash, subject_sealed, metadata, created_at, expires_at';

/** One record as the parameters of an insert, in TOKEN_COLUMNS order. */
export function tokenParams(r: TokenRecord): unknown[] {
  return [
    r.token,
    r.tenant,
    r.type,
    r.format,
    r.preserve,
    r.binding,
    r.keyVersion,
    r.nonce,
    r.ciphertext,
    r.tag,
    r.fingerprint,
    r.subjectHash,
    r.subjectSealed,
    r.metadata ? JSON.stringify(r.metadata) : null,
    r.createdAt,
    r.expiresAt,
  ];
}

/** Audit lists are JSON text (PostgreSQL compresses long values itself). */
export function encodeAuditJson(list: readonly string[]): string {
  return JSON.stringify(list);
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
    types: JSON.parse(row.types),
    tokens: JSON.parse(row.tokens),
    purpose: row.purpose,
    outcome: row.outcome as AuditRow['outcome'],
    reason: row.reason,
    subjects: JSON.parse(row.subjects),
    keyVersion: row.key_version,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

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
