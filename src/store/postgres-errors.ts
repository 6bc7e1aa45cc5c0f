import { DatabaseError } from 'pg';
import { StoreUnavailableError } from './vault-store';

/** Serialization failure and deadlock: the transaction (or savepoint) may simply be run again. */
const RETRYABLE = new Set(['40001', '40P01']);

/**
 * SQLSTATE classes that say the database cannot serve right now rather than that a statement is
 * wrong: connection exceptions (08), insufficient resources (53), operator intervention such as a
 * statement timeout or a shutdown (57), system errors (58), internal errors (XX), and a session
 * ended by idle_in_transaction_session_timeout (25P03).
 */
const UNAVAILABLE_CLASSES = ['08', '53', '57', '58', 'XX'];

export function isRetryable(err: unknown): boolean {
  return err instanceof DatabaseError && RETRYABLE.has(err.code ?? '');
}

/**
 * What a failed driver call means to the vault. The server's own refusals of a statement (a
 * constraint, a type error: a bug) stay as they are; everything else the driver throws (a refused
 * or dropped connection, a connect timeout, a statement timeout, a shutdown) is StoreUnavailableError.
 * Retryable errors are left for the caller's retry loop. Messages name codes, never values.
 */
export function toStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError) return err;
  if (err instanceof DatabaseError) {
    const code = err.code ?? '';
    if (RETRYABLE.has(code)) return err;
    if (code === '25P03' || UNAVAILABLE_CLASSES.includes(code.slice(0, 2))) {
      return new StoreUnavailableError(`database unavailable (${code})`, err);
    }
    return err;
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  return new StoreUnavailableError(`database unavailable (${code ?? 'connection lost'})`, err);
}

/** Whether a connection that saw this error should be thrown away rather than reused. */
export function breaksConnection(err: unknown): boolean {
  return err instanceof StoreUnavailableError;
}

/** A database URL fit for messages: the password is never shown. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable database URL)';
  }
}
