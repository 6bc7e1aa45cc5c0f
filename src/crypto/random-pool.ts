import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 16 * 1024;
let pool = Buffer.alloc(0);
let offset = 0;

/**
 * Cryptographically secure random bytes, drawn from a pool refilled by the CSPRNG 16 KiB at a time.
 * Asking the CSPRNG for 12 bytes per nonce and a few per token digit costs far more than the bytes;
 * every byte handed out is used once and copied out, so no two callers ever share one.
 */
export function pooledRandomBytes(size: number): Buffer {
  if (size > POOL_BYTES) return randomFillSync(Buffer.allocUnsafe(size));
  if (offset + size > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    offset = 0;
  }
  const bytes = Buffer.from(pool.subarray(offset, offset + size));
  pool.fill(0, offset, offset + size);
  offset += size;
  return bytes;
}
