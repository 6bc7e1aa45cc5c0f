import { createHmac } from 'node:crypto';
import { encodeFields, openBlob, sealBlob } from '../crypto/aead';
import type { DataType } from '../domain/types';
import type { Metadata, TokenRecord } from '../store/vault-store';

/**
 * The binding new records are sealed with. 1: the value's AAD covers tenant, type, token and key
 * version only (records written before migration 5; the re-encryption job upgrades them).
 * 2: it covers every security-relevant column (see `recordAad`).
 */
export const CURRENT_BINDING = 2;

/**
 * Binding 2 plus a second, inner layer: the value and the subject id were first sealed under the
 * record's per-subject key (crypto-shredding, see subject-layer.ts), then under the data key as
 * any record. The marker is covered by the outer AAD (its own label), so a database writer who
 * flips a record between 2 and 3 makes it fail to open. The re-encryption job keeps it (it
 * re-seals the outer layer only; the inner bytes are opaque to it).
 */
export const SUBJECT_KEYED_BINDING = 3;

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
  return encodeFields(r.binding === SUBJECT_KEYED_BINDING ? 'pii-vault/value/v3' : 'pii-vault/value/v2', [
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

/**
 * Seals a subject id (or, on a subject-keyed record, its inner layer: opaque bytes) under the data
 * key as one blob: nonce | tag | ciphertext.
 */
export function sealSubject(dataKey: Buffer, subject: Buffer, tenant: string, token: string, keyVersion: number): Buffer {
  return sealBlob(dataKey, subject, subjectAad(tenant, token, keyVersion));
}

export function openSubject(dataKey: Buffer, blob: Buffer, tenant: string, token: string, keyVersion: number): Buffer {
  return openBlob(dataKey, blob, subjectAad(tenant, token, keyVersion));
}

/** What the inner layer of a subject-keyed record is bound to: the record and the subject key's owner. */
type InnerBound = Pick<TokenRecord, 'tenant' | 'type' | 'token' | 'subjectHash'>;

function innerAad(label: string, r: InnerBound): Buffer {
  return encodeFields(label, [r.tenant, r.type, r.token, r.subjectHash?.toString('hex') ?? '']);
}

/**
 * The inner layers of a subject-keyed record (binding 3): value and subject id sealed under the
 * subject key, bound to tenant, type, token and subject HMAC (columns the re-encryption job never
 * changes; the outer layer binds the rest). Without a subject key, the plaintexts as they are.
 */
export function innerLayers(subjectKey: Buffer | undefined, r: InnerBound, value: string, subject: string | undefined) {
  const valueBytes = Buffer.from(value, 'utf8');
  const subjectBytes = subject === undefined ? null : Buffer.from(subject, 'utf8');
  if (!subjectKey) return { value: valueBytes, subject: subjectBytes };
  return {
    value: sealBlob(subjectKey, valueBytes, innerAad('pii-vault/subject-keyed/value/v1', r)),
    subject: subjectBytes && sealBlob(subjectKey, subjectBytes, innerAad('pii-vault/subject-keyed/subject/v1', r)),
  };
}

/** Opens the inner layer of a subject-keyed record's value; IntegrityError when it was altered. */
export function openInnerValue(subjectKey: Buffer, r: InnerBound, inner: Buffer): Buffer {
  return openBlob(subjectKey, inner, innerAad('pii-vault/subject-keyed/value/v1', r));
}

export function openInnerSubject(subjectKey: Buffer, r: InnerBound, inner: Buffer): Buffer {
  return openBlob(subjectKey, inner, innerAad('pii-vault/subject-keyed/subject/v1', r));
}
