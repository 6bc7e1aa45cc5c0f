import { VaultError } from '../errors';

/**
 * What may be written down of an error caught where no caller sees it (a background job, a probe,
 * an audit append nobody waits for): its class and code, and its message only when the vault wrote
 * it — any other message may quote data.
 */
export function errorForLog(err: unknown): { name: string; code?: string; message?: string } {
  const e = err as { name?: unknown; code?: unknown; message?: unknown } | null | undefined;
  const name = typeof e?.name === 'string' ? e.name : typeof err;
  const code = typeof e?.code === 'string' || typeof e?.code === 'number' ? String(e.code) : undefined;
  // The vault's own errors: their messages are written by the vault and never carry a value.
  const own = err instanceof VaultError;
  return { name, ...(code ? { code } : {}), ...(own ? { message: String(e!.message) } : {}) };
}

/** The same, as one line (for a job's stored `error`). */
export function errorSummary(err: unknown): string {
  const { name, code, message } = errorForLog(err);
  return [name, code && `(${code})`, message && `: ${message}`].filter(Boolean).join(' ').replace(' :', ':');
}
