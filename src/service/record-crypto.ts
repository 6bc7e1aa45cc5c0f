import { createHmac } from 'node:crypto';
import { Sealed, encodeFields, open, seal } from '../crypto/aead';
import type { DataType } from '../domain/types';

/** AAD binding a value's ciphertext to its row: moved to another row, it no longer opens. */
export function valueAad(tenant: string, type: DataType, token: string, keyVersion: number): Buffer {
  return encodeFields('pii-vault/value/v1', [tenant, type, token, keyVersion]);
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
