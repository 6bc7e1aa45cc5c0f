/**
 * When a failed call is sent again, and how long to wait first.
 *
 * Only 429 and 503 answers are retried, never another 4xx or a 500. Which of those prove that
 * nothing was done depends on the code:
 * - `rate_limited` (429) and `overloaded` (503) are answered before the request is processed;
 * - `audit_unavailable`, `key_unavailable` and `kms_unavailable` (503) mean the write was refused:
 *   the records and their audit row commit in one transaction, and no key means nothing was sealed;
 * - `store_unavailable` (503) may come after a write committed (e.g. the disk failed while syncing),
 *   and a 503 without the vault's error body (a proxy) proves nothing.
 * So an idempotent call (reads, deterministic tokenize, rewrap, retire, destroy, delete) is retried
 * on any 429/503 but `too_many_auth_failures` (the key itself was refused; waiting does not help),
 * and a call that is not (tokenize without `deterministic`, rotate, reencrypt) only on the codes
 * that prove it was not processed. Connection failures and timeouts are never retried: the request
 * may have been processed.
 */

export interface RetryOptions {
  /** Attempts per call, the first included (default 4; 1 disables retries). */
  maxAttempts?: number;
  /** Backoff base: the n-th retry waits a random time up to baseDelayMs × 2^(n-1) (default 100). */
  baseDelayMs?: number;
  /** No single wait is longer; a `Retry-After` beyond it ends the retries (default 5000). */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 5000 };

const NOT_PROCESSED = new Set(['rate_limited', 'overloaded', 'audit_unavailable', 'key_unavailable', 'kms_unavailable']);

export function isRetryable(status: number, code: string | undefined, idempotent: boolean): boolean {
  if (status !== 429 && status !== 503) return false;
  if (code === 'too_many_auth_failures') return false;
  return idempotent || (code !== undefined && NOT_PROCESSED.has(code));
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before retry number `retry` (1, 2, …): full jitter over the exponential backoff, and
 * never less than the vault's `Retry-After`. Undefined when that is longer than maxDelayMs.
 */
export function backoffDelay(
  retry: number,
  options: Required<RetryOptions>,
  retryAfter?: number,
  random = Math.random,
): number | undefined {
  if (retryAfter !== undefined && retryAfter > options.maxDelayMs) return undefined;
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (retry - 1));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(retryAfter ?? 0, jittered);
}

/** Waits, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
