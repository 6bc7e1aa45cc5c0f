import type { NextFunction, Request, Response } from 'express';
import { AuditUnavailableError } from '../audit/audit-log';
import { KmsUnavailableError } from '../crypto/aws-kms-key-provider';
import { KeyUnavailableError } from '../crypto/key-provider';
import { ErrorCode, VaultError } from '../errors';
import type { Logger } from '../logger';
import { StoreUnavailableError, TokenCollisionError } from '../store/vault-store';

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
export function toVaultError(err: unknown): VaultError {
  if (err instanceof VaultError) return err;
  if (err instanceof AuditUnavailableError) return new VaultError('audit_unavailable');
  if (err instanceof StoreUnavailableError) return new VaultError('store_unavailable');
  if (err instanceof KmsUnavailableError) return new VaultError('kms_unavailable', `AWS KMS is unavailable (${err.reason}) and the key needed is not cached; try again later.`);
  if (err instanceof KeyUnavailableError) return new VaultError('key_unavailable');
  if (err instanceof TokenCollisionError) return new VaultError('token_collision');
  const bodyType = (err as { type?: string }).type;
  if (bodyType && BODY_ERRORS[bodyType]) return new VaultError(BODY_ERRORS[bodyType]);
  return new VaultError('internal_error');
}

export function errorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const error = toVaultError(err);
    if (error.status >= 500) {
      // Our errors never carry values; log the class and message for operators, not the request.
      logger.error({ requestId: req.id, err: { name: (err as Error)?.name, message: (err as Error)?.message, code: error.code } }, 'request failed');
    }
    if (res.headersSent) return;
    sendError(res, req.id, error);
  };
}

export function sendError(res: Response, requestId: string, error: VaultError): void {
  res.status(error.status).json({
    error: { code: error.code, message: error.message, requestId, ...(error.details ? { details: error.details } : {}) },
  });
}
