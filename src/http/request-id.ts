import { v4 as uuidv4 } from 'uuid';

/**
 * The request id lands in logs and audit rows and is echoed back, so a caller's `X-Request-Id` is
 * taken only in a shape that cannot carry personal data or a card number: a UUID, or 1 to 64 of
 * `A-Z a-z 0-9 - _` with no 6 or more digits in a row (`-` and `_` between digits count as
 * nothing, so `4111-1111-…` is refused). Anything else is replaced by a new UUID.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHORT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
const SIX_DIGITS = /\d{6}/;

function acceptableRequestId(candidate: unknown): candidate is string {
  if (typeof candidate !== 'string') return false;
  if (UUID.test(candidate)) return true;
  return SHORT_TOKEN.test(candidate) && !SIX_DIGITS.test(candidate.replace(/[-_]/g, ''));
}

/** The caller's id when acceptable, else a new one. */
export function requestIdFor(header: string | string[] | undefined): string {
  return acceptableRequestId(header) ? header : uuidv4();
}
