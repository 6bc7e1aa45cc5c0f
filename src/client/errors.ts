/** Errors the client throws. Every one carries a stable `code` to branch on. */

/** The vault answered with an error: its stable `code` (see the README's error table), HTTP status and request id. */
export class VaultApiError extends Error {
  override readonly name = 'VaultApiError';
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly requestId: string | undefined,
    readonly details: Record<string, unknown> | undefined,
    /** From `Retry-After`, when the vault sent one. */
    readonly retryAfterMs: number | undefined,
    /** How many attempts were made (more than 1 when it was retried). */
    readonly attempts: number,
  ) {
    super(message);
  }
}

/** No answer: the connection failed (`code` "connection_failed") or the attempt timed out ("timeout"). */
export class VaultConnectionError extends Error {
  override readonly name = 'VaultConnectionError';
  constructor(
    readonly code: 'connection_failed' | 'timeout',
    message: string,
    readonly requestId: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A batch helper failed part-way: `completed` holds the results of the requests that succeeded, in order. */
export class VaultBatchError<T> extends Error {
  override readonly name = 'VaultBatchError';
  readonly code: string;
  constructor(
    readonly completed: T[],
    override readonly cause: VaultApiError | VaultConnectionError | Error,
  ) {
    super(`batch stopped after ${completed.length} items: ${cause.message}`);
    this.code = (cause as { code?: string }).code ?? 'unknown';
  }
}
