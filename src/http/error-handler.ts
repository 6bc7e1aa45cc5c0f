import type { ServerResponse } from 'node:http';
import { ErrorCode, VaultError } from '../errors';
import type { Logger } from '../logger';
import { ApiRequest, Next, sendJson } from './pipeline';

/** body-parser's error types, mapped to our codes. */
const BODY_ERRORS: Record<string, ErrorCode> = {
  'entity.parse.failed': 'malformed_json',
  'entity.too.large': 'payload_too_large',
  'encoding.unsupported': 'unsupported_media_type',
  'charset.unsupported': 'unsupported_media_type',
  'request.size.invalid': 'invalid_request',
  'request.aborted': 'invalid_request',
  'stream.encoding.set': 'internal_error',
};

/**
 * The one place where any error becomes a response: the vault's own errors carry their code (and
 * so their status) and the message the caller may see; anything else is a body-parser or express
 * error, or internal_error. No stack, no internal message.
 */
export function toVaultError(err: unknown): VaultError {
  if (err instanceof VaultError) return err;
  const bodyType = (err as { type?: string }).type;
  if (bodyType && BODY_ERRORS[bodyType]) return new VaultError(BODY_ERRORS[bodyType]);
  // Other client errors raised by the router itself (e.g. an undecodable path parameter).
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new VaultError('invalid_request', 'The request could not be read.');
  return new VaultError('internal_error');
}

export function errorHandler(logger: Logger) {
  return (err: unknown, req: ApiRequest, res: ServerResponse, _next?: Next) => {
    const error = toVaultError(err);
    if (error.status >= 500) logger.error({ requestId: req.id, code: error.code, err: describeForLog(err) }, 'request failed');
    if (res.headersSent) return;
    sendError(res, req.id, error);
  };
}

/**
 * What operators see of an error: the vault's own error classes carry no values, so their message
 * is logged; of anything else (whose message may quote the request) only the class and where it
 * was thrown.
 */
function describeForLog(err: unknown): Record<string, unknown> {
  const e = err as Error;
  const own = err instanceof VaultError;
  const at = /\n\s+at (.*)/.exec(e?.stack ?? '')?.[1];
  return own ? { name: e.name, message: e.message } : { name: e?.name ?? typeof err, at };
}

export function sendError(res: ServerResponse, requestId: string, error: VaultError): void {
  sendJson(res, error.status, {
    error: { code: error.code, message: error.publicMessage, requestId, ...(error.details ? { details: error.details } : {}) },
  });
}
