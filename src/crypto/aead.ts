import { createCipheriv, createDecipheriv } from 'node:crypto';
import { pooledRandomBytes } from './random-pool';
import { InternalError } from '../errors';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export interface Sealed {
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** AES-256-GCM with a fresh random 96-bit nonce. `aad` binds the ciphertext to where it is stored. */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  const nonce = pooledRandomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

/** Opens a sealed value; throws IntegrityError when any byte, the key or the AAD differs. */
export function open(key: Buffer, sealed: Sealed, aad: Buffer): Buffer {
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES) {
    throw new IntegrityError('malformed nonce or tag');
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    throw new IntegrityError('authentication failed');
  }
}

/** Seals into one blob: nonce | tag | ciphertext. */
export function sealBlob(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const s = seal(key, plaintext, aad);
  return Buffer.concat([s.nonce, s.tag, s.ciphertext]);
}

/** Opens a blob of sealBlob; IntegrityError as open. */
export function openBlob(key: Buffer, blob: Buffer, aad: Buffer): Buffer {
  const sealed: Sealed = {
    nonce: blob.subarray(0, NONCE_BYTES),
    tag: blob.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES),
    ciphertext: blob.subarray(NONCE_BYTES + TAG_BYTES),
  };
  return open(key, sealed, aad);
}

/**
 * A ciphertext or MAC did not verify. Record failures are reported per item; one that reaches a
 * caller concerns a key record, so it answers key_unavailable.
 */
export class IntegrityError extends InternalError {
  constructor(reason: string) {
    super('key_unavailable', `integrity check failed: ${reason}`, 'A key record failed its integrity check; the request was refused.');
    this.name = 'IntegrityError';
  }
}

/**
 * Unambiguous encoding of labelled fields for AAD and MAC inputs: each field is
 * length-prefixed, so ("ab","c") and ("a","bc") never encode the same.
 */
export function encodeFields(label: string, fields: ReadonlyArray<string | number>): Buffer {
  const strings = [label, ...fields.map(String)];
  let size = 0;
  for (const text of strings) size += 4 + Buffer.byteLength(text, 'utf8');
  // Every byte is written below, so the unzeroed allocation leaks nothing.
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const text of strings) {
    const length = out.write(text, at + 4, 'utf8');
    out.writeUInt32BE(length, at);
    at += 4 + length;
  }
  return out;
}
