import { randomUUID } from 'node:crypto';

/**
 * The vault keeps a caller's `X-Request-Id` only in a shape that cannot carry personal data (else it
 * replaces it): a UUID, or 1–64 of `A-Z a-z 0-9 - _` without 6 or more digits in a row, `-` and `_`
 * between digits not counting. The client refuses any other id before sending, so the id a caller
 * logs is always the one the vault's logs and audit rows carry.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHORT_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isAcceptableRequestId(id: string): boolean {
  return UUID.test(id) || (SHORT_ID.test(id) && !/\d{6}/.test(id.replace(/[-_]/g, '')));
}

export function requestIdOrNew(id: string | undefined): string {
  if (id === undefined) return randomUUID();
  if (!isAcceptableRequestId(id)) {
    throw new TypeError('requestId must be a UUID or 1-64 of A-Z a-z 0-9 - _ without 6 digits in a row (the vault would replace it)');
  }
  return id;
}
