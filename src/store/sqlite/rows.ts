import { encodeAuditList } from '../audit-list-codec';
import type { AuditRow, JobRecord, TokenRecord } from '../vault-store';

/** Records as the named parameters of SQLite statements (rows back to records: ../rows.ts). */

export function toJobParams(job: JobRecord) {
  return { ...job, tenants: JSON.stringify(job.tenants) };
}

export function toTokenParams(r: TokenRecord) {
  return { ...r, metadata: r.metadata ? JSON.stringify(r.metadata) : null };
}

export function toAuditParams(row: AuditRow) {
  return { ...row, types: encodeAuditList(row.types), tokens: encodeAuditList(row.tokens), subjects: encodeAuditList(row.subjects) };
}
