import { createHmac } from 'node:crypto';
import { Sealed, encodeFields, open, seal } from '../crypto/aead';
import type { DataType } from '../domain/types';
import type { Metadata, TokenRecord } from '../store/vault-store';

/**
 * The binding new records are sealed with. 1: the value's AAD covers tenant, type, token and key
 * version only (records written before migration 5; the re-encryption job upgrades them).
 * 2: it covers every security-relevant column (see `recordAad`).
 */
export const CURRENT_BINDING = 2;

/** The columns a record's ciphertext is bound to. */
type BoundRecord = Pick<
  TokenRecord,
  | 'tenant'
  | 'type'
  | 'token'
  | 'keyVersion'
  | 'format'
  | 'preserve'
  | 'fingerprint'
  | 'subjectHash'
  | 'metadata'
  | 'createdAt'
  | 'expiresAt'
  | 'binding'
>;

/** Binding 1 AAD (pinned by golden vectors): moved to another row, the ciphertext no longer opens. */
export function valueAad(tenant: string, type: DataType, token: string, keyVersion: number): Buffer {
  return encodeFields('pii-vault/value/v1', [tenant, type, token, keyVersion]);
}

/**
 * The AAD of a record under its binding. Binding 2 covers every column that decides who gets the
 * value back or which token a value has, so editing any of them (clearing `expires_at`, moving a
 * fingerprint, relabelling the format) makes the value fail to open. Absent values encode as ''
 * (a hex digest, a number or JSON is never empty). A binding-2 record read as binding 1 (the
 * marker downgraded) fails too: the AAD differs from the one it was sealed with.
 */
export function recordAad(r: BoundRecord): Buffer {
  if (r.binding === 1) return valueAad(r.tenant, r.type, r.token, r.keyVersion);
  return encodeFields('pii-vault/value/v2', [
    r.tenant,
    r.type,
    r.token,
    r.keyVersion,
    r.format,
    r.preserve ?? '',
    r.fingerprint?.toString('hex') ?? '',
    r.subjectHash?.toString('hex') ?? '',
    r.createdAt,
    r.expiresAt ?? '',
    canonicalMetadata(r.metadata),
  ]);
}

/** Metadata as JSON with sorted keys, '' when there is none: one encoding per meaning. */
export function canonicalMetadata(metadata: Metadata | null | undefined): string {
  if (!metadata) return '';
  return JSON.stringify(Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

function subjectAad(tenant: string, token: string, keyVersion: number): Buffer {
  return encodeFields('pii-vault/subject/v1', [tenant, token, keyVersion]);
}

/** Deterministic lookup key for a normalised value, under the tenant's fingerprint key. */
export function fingerprint(fingerprintKey: Buffer, type: DataType, normalized: string): Buffer {
  return createHmac('sha256', fingerprintKey)
    .update(encodeFields('pii-vault/fingerprint/v1', [type, normalized]))
    .digest();
}

/** Keyed HMAC of a data subject id: lets records and audit rows name a subject without holding the id. */
export function subjectHash(fingerprintKey: Buffer, subject: string): Buffer {
  return createHmac('sha256', fingerprintKey)
    .update(encodeFields('pii-vault/subject/v1', [subject]))
    .digest();
}

/** Seals a subject id as one blob: nonce | tag | ciphertext. */
export function sealSubject(dataKey: Buffer, subject: string, tenant: string, token: string, keyVersion: number): Buffer {
  const s = seal(dataKey, Buffer.from(subject, 'utf8'), subjectAad(tenant, token, keyVersion));
  return Buffer.concat([s.nonce, s.tag, s.ciphertext]);
}

export function openSubject(dataKey: Buffer, blob: Buffer, tenant: string, token: string, keyVersion: number): string {
  const sealed: Sealed = { nonce: blob.subarray(0, 12), tag: blob.subarray(12, 28), ciphertext: blob.subarray(28) };
  return open(dataKey, sealed, subjectAad(tenant, token, keyVersion)).toString('utf8');
}
