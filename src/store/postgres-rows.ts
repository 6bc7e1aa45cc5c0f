import type { TokenRecord } from './vault-store';

/** Records as the parameters of PostgreSQL statements (rows back to records: rows.ts). */

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
