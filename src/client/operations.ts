/**
 * Every API operation the client calls: method, path and the request fields it may send. The client
 * builds its requests from this table, and a test checks it against the vault's served OpenAPI
 * document (each operation, path, body field and query parameter exists there, and every /v1
 * operation there is here), so the two cannot drift apart.
 */
export interface Operation {
  method: 'GET' | 'POST' | 'DELETE';
  /** With `{name}` path parameters, as in the OpenAPI document. */
  path: string;
  /** Top-level JSON body fields the client may send (none: no body). */
  body?: readonly string[];
  query?: readonly string[];
  /** Sending it twice has the effect of sending it once (see retry.ts for what that allows). */
  idempotent: boolean;
}

export const OPERATIONS = {
  tokenize: { method: 'POST', path: '/v1/tokenize', body: ['tenant', 'items', 'purposes'], idempotent: false },
  detokenize: { method: 'POST', path: '/v1/detokenize', body: ['tokens', 'purpose', 'reveal', 'tenant'], idempotent: true },
  getTokenMetadata: { method: 'GET', path: '/v1/tokens/{token}', query: ['tenant'], idempotent: true },
  deleteToken: { method: 'DELETE', path: '/v1/tokens/{token}', query: ['tenant'], idempotent: true },
  listAudit: { method: 'GET', path: '/v1/audit', query: ['after', 'limit'], idempotent: true },
  verifyAudit: { method: 'GET', path: '/v1/audit/verify', idempotent: true },
  policyReport: { method: 'GET', path: '/v1/policy/report', idempotent: true },
  listKeys: { method: 'GET', path: '/v1/keys', query: ['tenant', 'all'], idempotent: true },
  rotateKeys: { method: 'POST', path: '/v1/keys/rotate', body: ['tenant', 'all'], idempotent: false },
  rewrapKeys: { method: 'POST', path: '/v1/keys/rewrap', body: ['target'], idempotent: true },
  reencryptRecords: { method: 'POST', path: '/v1/keys/reencrypt', body: ['tenant', 'all'], idempotent: false },
  getJob: { method: 'GET', path: '/v1/jobs/{id}', idempotent: true },
  retireKey: { method: 'POST', path: '/v1/keys/{version}/retire', body: ['tenant'], idempotent: true },
  destroyKey: { method: 'POST', path: '/v1/keys/{version}/destroy', body: ['tenant', 'confirm'], idempotent: true },
  exportSubject: { method: 'POST', path: '/v1/subjects/export', body: ['tenant', 'subject'], idempotent: true },
  subjectAccessLog: { method: 'POST', path: '/v1/subjects/access-log', body: ['tenant', 'subject', 'from', 'to'], idempotent: true },
  eraseSubject: { method: 'POST', path: '/v1/subjects/erase', body: ['tenant', 'subject'], idempotent: true },
  changeSubjectConsent: {
    method: 'POST',
    path: '/v1/subjects/consent',
    body: ['tenant', 'subject', 'grant', 'withdraw'],
    idempotent: true,
  },
} as const satisfies Record<string, Operation>;

/** The tokenize item fields the client sends (checked against the document too). */
export const TOKENIZE_ITEM_FIELDS = [
  'type',
  'value',
  'format',
  'preserve',
  'deterministic',
  'subject',
  'purposes',
  'metadata',
  'ttlSeconds',
] as const;

export type OperationId = keyof typeof OPERATIONS;
