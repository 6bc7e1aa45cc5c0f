import { randomUUID } from 'node:crypto';
import { luhnValid } from '../domain/data-types';

/**
 * The request id lands in logs and audit rows and is echoed back, so a caller's `X-Request-Id` is
 * taken only in a shape that cannot carry personal data or a card number: a UUID (without a
 * Luhn-valid run of 13–19 digits), or 1 to 64 of
 * `A-Z a-z 0-9 - _` with no 6 or more digits in a row (`-` and `_` between digits count as
 * nothing, so `4111-1111-…` is refused). Anything else is replaced by a new UUID.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DIGIT_RUNS = /\d{13,}/g;
const SHORT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
const SIX_DIGITS = /\d{6}/;

function acceptableRequestId(candidate: unknown): candidate is string {
  if (typeof candidate !== 'string') return false;
  if (UUID.test(candidate)) return !holdsCardNumber(candidate.replace(/-/g, ''));
  return SHORT_TOKEN.test(candidate) && !SIX_DIGITS.test(candidate.replace(/[-_]/g, ''));
}

/** A UUID is hex, so a card number fits in one: refuse those whose digit runs hold a Luhn-valid 13–19 digits. */
function holdsCardNumber(hex: string): boolean {
  for (const [run] of hex.matchAll(DIGIT_RUNS)) {
    for (let start = 0; start + 13 <= run.length; start++) {
      for (let length = 13; length <= 19 && start + length <= run.length; length++)
        if (luhnValid(run.slice(start, start + length))) return true;
    }
  }
  return false;
}

/** The caller's id when acceptable, else a new one. */
export function requestIdFor(header: string | string[] | undefined): string {
  return acceptableRequestId(header) ? header : randomUUID();
}
