import type { ServerResponse } from 'node:http';
import { AuditUnavailableError } from '../audit/audit-log';
import { KmsUnavailableError } from '../crypto/aws-kms-key-provider';
import { KeyUnavailableError } from '../crypto/key-provider';
import { ErrorCode, VaultError } from '../errors';
import type { Logger } from '../logger';
import { StaleDataKeyError, StoreUnavailableError, TokenCollisionError } from '../store/vault-store';
import { IntegrityError } from '../crypto/aead';
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

/** The one place where any error becomes a response: a stable code, a safe message, no stack. */
function toVaultError(err: unknown): VaultError {
  if (err instanceof VaultError) return err;
  if (err instanceof AuditUnavailableError) return new VaultError('audit_unavailable');
  if (err instanceof StoreUnavailableError) return new VaultError('store_unavailable');
  if (err instanceof KmsUnavailableError)
    return new VaultError('kms_unavailable', `AWS KMS is unavailable (${err.reason}) and the key needed is not cached; try again later.`);
  if (err instanceof KeyUnavailableError) return new VaultError('key_unavailable');
  if (err instanceof TokenCollisionError) return new VaultError('token_collision');
  if (err instanceof IntegrityError)
    return new VaultError('key_unavailable', 'A key record failed its integrity check; the request was refused.');
  if (err instanceof StaleDataKeyError) return new VaultError('key_unavailable', 'Keys are being rotated; retry the request.');
  const bodyType = (err as { type?: string }).type;
  if (bodyType && BODY_ERRORS[bodyType]) return new VaultError(BODY_ERRORS[bodyType]);
  // Other client errors raised by express itself (e.g. an undecodable path parameter).
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
  const own = [
    AuditUnavailableError,
    StoreUnavailableError,
    KeyUnavailableError,
    IntegrityError,
    StaleDataKeyError,
    TokenCollisionError,
  ].some((cls) => err instanceof cls);
  const at = /\n\s+at (.*)/.exec(e?.stack ?? '')?.[1];
  return own ? { name: e.name, message: e.message } : { name: e?.name ?? typeof err, at };
}

export function sendError(res: ServerResponse, requestId: string, error: VaultError): void {
  sendJson(res, error.status, {
    error: { code: error.code, message: error.message, requestId, ...(error.details ? { details: error.details } : {}) },
  });
}
