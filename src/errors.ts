/**
 * The one catalogue of error codes the vault returns. Each code is stable (clients branch on it),
 * has one HTTP status and a default human message. Messages never carry a submitted value.
 */
export const ERROR_CATALOGUE = {
  malformed_json: { status: 400, message: 'The request body is not valid JSON.' },
  invalid_request: { status: 400, message: 'The request does not match the schema.' },
  invalid_value: { status: 400, message: 'A value is not valid for its data type.' },
  unsupported_format: { status: 400, message: 'The token format or preserve option does not apply to this data type.' },
  confirmation_required: { status: 400, message: 'This irreversible operation needs an explicit confirmation.' },
  too_many_items: { status: 400, message: 'Too many items in one request.' },
  ttl_exceeds_retention: { status: 400, message: 'The requested ttlSeconds is above the retention limit of its data type.' },
  too_many_purposes: { status: 400, message: 'A subject may have consented to at most 32 purposes; withdraw some first.' },
  sensitive_authentication_data: {
    status: 400,
    message: 'Card verification codes, PINs and magnetic-stripe track data must never be sent or stored (PCI DSS 3.3).',
  },
  unauthorized: { status: 401, message: 'A valid API key is required (Authorization: Bearer <key>).' },
  forbidden: { status: 403, message: 'The policy does not allow this action.' },
  not_found: { status: 404, message: 'No such resource.' },
  method_not_allowed: { status: 405, message: 'This method is not allowed on this path.' },
  token_collision: { status: 409, message: 'Could not allocate a unique token for this format; use a wider format.' },
  key_active: { status: 409, message: 'The active key cannot be retired or destroyed; rotate first.' },
  key_in_use: { status: 409, message: 'Records still use this key version; re-encrypt them first.' },
  key_state_conflict: { status: 409, message: 'The key is not in a state that allows this operation.' },
  deterministic_conflict: {
    status: 409,
    message: 'The deterministic token of this value exists with a different ttlSeconds, subject or metadata.',
  },
  ambiguous_token: { status: 409, message: 'The token exists in several of your tenants; name one with `tenant`.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  rate_limited: { status: 429, message: 'Too many requests for this principal; retry after the Retry-After header.' },
  too_many_auth_failures: {
    status: 429,
    message: 'Too many failed authentications from this address; retry after the Retry-After header.',
  },
  unsupported_media_type: { status: 415, message: 'The request body must be application/json.' },
  internal_error: { status: 500, message: 'Internal error.' },
  integrity_failed: { status: 500, message: 'A stored record failed its integrity check; nothing was stored or returned.' },
  overloaded: { status: 503, message: 'The vault is at its concurrent request limit; retry shortly.' },
  audit_unavailable: { status: 503, message: 'The audit log cannot be written; the request was refused.' },
  store_unavailable: { status: 503, message: 'The database is not available.' },
  key_unavailable: { status: 503, message: 'The encryption keys are not available.' },
  kms_unavailable: { status: 503, message: 'AWS KMS is unavailable and the key needed is not cached; try again later.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Per-item outcome codes in a detokenize response (not request-level errors). */
export const ITEM_ERROR_CODES = ['not_found', 'forbidden', 'expired', 'integrity_failed', 'ambiguous_token', 'erased'] as const;
export type ItemErrorCode = (typeof ITEM_ERROR_CODES)[number];
/** Why a per-item `forbidden` was refused when the policy would have allowed it. */
export const ITEM_ERROR_REASONS = ['consent_not_given'] as const;
export type ItemErrorReason = (typeof ITEM_ERROR_REASONS)[number];

/**
 * The base of every error the vault raises: it carries its catalogue code, so the HTTP layer maps
 * any of them to a response by that code alone. Messages never carry a submitted value.
 */
export class VaultError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: Record<string, unknown>;
  /** What the caller is told: the message, unless the error is an InternalError. */
  readonly publicMessage: string;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>, publicMessage?: string) {
    super(message ?? ERROR_CATALOGUE[code].message);
    this.name = 'VaultError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.details = details;
    this.publicMessage = publicMessage ?? this.message;
  }
}

/**
 * A failure inside the vault (store, keys, audit, integrity): its message is for the operators'
 * log and may name files or KMS errors; the caller is told only `publicMessage`, by default the
 * catalogue message of its code.
 */
export class InternalError extends VaultError {
  constructor(code: ErrorCode, message: string, publicMessage: string = ERROR_CATALOGUE[code].message) {
    super(code, message, undefined, publicMessage);
    this.name = 'InternalError';
  }
}
