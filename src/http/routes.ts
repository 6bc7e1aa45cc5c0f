import { TSchema, Type } from '@sinclair/typebox';
import {
  AuditListResponseSchema,
  AuditQuerySchema,
  AuditVerifyResponseSchema,
  DetokenizeRequest,
  DetokenizeRequestSchema,
  DetokenizeResponseSchema,
  HealthSchema,
  ReadinessSchema,
  TokenMetadataSchema,
  TokenQuerySchema,
  TokenizeRequest,
  TokenizeRequestSchema,
  TokenizeResponseSchema,
  MAX_TOKEN_LENGTH,
  DestroyRequest,
  DestroyRequestSchema,
  JobResponseSchema,
  JobSchema,
  KeyChangeResponseSchema,
  KeyListResponseSchema,
  KeyScope,
  KeyScopeSchema,
  KeysQuerySchema,
  RetireRequestSchema,
  RewrapRequest,
  RewrapRequestSchema,
  RotateResponseSchema,
  RewrapResponseSchema,
} from '../contract/schemas';
import { ErrorCode, VaultError } from '../errors';
import { DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE } from '../service/audit-queries';
import type { Caller } from '../service/context';
import type { Vault } from '../service/vault';

interface RouteInput {
  vault: Vault;
  caller: Caller;
  body: unknown;
  query: Record<string, string>;
  params: Record<string, string>;
}

/** One API operation: its path, contract and handler. The router and OpenAPI are built from these. */
export interface Route {
  method: 'get' | 'post' | 'delete';
  path: string;
  operationId: string;
  summary: string;
  action: string;
  body?: TSchema;
  query?: TSchema;
  status: number;
  response?: TSchema;
  /** Error codes this operation can answer besides those every /v1 operation can (see openapi.ts). */
  errors?: ErrorCode[];
  handler: (input: RouteInput) => Promise<unknown>;
}

const TOKEN_PARAM = new RegExp(`^[A-Za-z0-9_@.+-]{1,${MAX_TOKEN_LENGTH}}$`);

function tokenParam(params: Record<string, string>): string {
  const token = params.token;
  if (!TOKEN_PARAM.test(token)) throw new VaultError('not_found', 'No such token.');
  return token;
}

export const API_ROUTES: Route[] = [
  {
    method: 'post',
    path: '/v1/tokenize',
    operationId: 'tokenize',
    summary: 'Tokenize up to 1,000 values atomically; returns one token per item in request order.',
    action: 'tokenize',
    body: TokenizeRequestSchema,
    status: 200,
    response: TokenizeResponseSchema,
    errors: ['invalid_value', 'unsupported_format', 'too_many_items', 'token_collision'],
    handler: ({ vault, caller, body }) => vault.tokenize(caller, body as TokenizeRequest),
  },
  {
    method: 'post',
    path: '/v1/detokenize',
    operationId: 'detokenize',
    summary: 'Return values for tokens, plain or masked as the policy allows for the stated purpose.',
    action: 'detokenize',
    body: DetokenizeRequestSchema,
    status: 200,
    response: DetokenizeResponseSchema,
    errors: ['too_many_items'],
    handler: ({ vault, caller, body }) => vault.detokenize(caller, body as DetokenizeRequest),
  },
  {
    method: 'get',
    path: '/v1/tokens/:token',
    operationId: 'getTokenMetadata',
    summary: "A token's metadata (never its value).",
    action: 'read-metadata',
    query: TokenQuerySchema,
    status: 200,
    response: TokenMetadataSchema,
    errors: ['not_found', 'ambiguous_token'],
    handler: ({ vault, caller, params, query }) => vault.readMetadata(caller, tokenParam(params), query.tenant),
  },
  {
    method: 'delete',
    path: '/v1/tokens/:token',
    operationId: 'deleteToken',
    summary: 'Delete a token and its ciphertext.',
    action: 'delete',
    query: TokenQuerySchema,
    status: 204,
    errors: ['not_found', 'ambiguous_token'],
    handler: ({ vault, caller, params, query }) => vault.deleteToken(caller, tokenParam(params), query.tenant),
  },
  {
    method: 'get',
    path: '/v1/audit',
    operationId: 'listAudit',
    summary: 'Audit rows in sequence order, paged with `after` and `limit`.',
    action: 'audit:read',
    query: AuditQuerySchema,
    status: 200,
    response: AuditListResponseSchema,
    handler: ({ vault, caller, query }) => {
      const after = Number(query.after ?? 0);
      const limit = Number(query.limit ?? DEFAULT_AUDIT_PAGE);
      if (limit < 1 || limit > MAX_AUDIT_PAGE) {
        throw new VaultError('invalid_request', `query/limit: must be between 1 and ${MAX_AUDIT_PAGE}`, { path: '/limit' });
      }
      return vault.listAudit(caller, after, limit);
    },
  },
  {
    method: 'get',
    path: '/v1/audit/verify',
    operationId: 'verifyAudit',
    summary: "Verify the audit log's hash chain; names the first bad row.",
    action: 'audit:read',
    status: 200,
    response: AuditVerifyResponseSchema,
    handler: ({ vault, caller }) => vault.verifyAudit(caller),
  },
];

function versionParam(params: Record<string, string>): number {
  if (!/^[1-9][0-9]{0,8}$/.test(params.version)) throw new VaultError('not_found', 'No such key version.');
  return Number(params.version);
}

API_ROUTES.push(
  {
    method: 'get',
    path: '/v1/keys',
    operationId: 'listKeys',
    summary: 'Every key version of a tenant (or all covered tenants) with state, KEK and record counts.',
    action: 'keys:read',
    query: KeysQuerySchema,
    status: 200,
    response: KeyListResponseSchema,
    handler: ({ vault, caller, query }) => vault.listKeys(caller, { tenant: query.tenant, all: query.all === 'true' }),
  },
  {
    method: 'post',
    path: '/v1/keys/rotate',
    operationId: 'rotateKeys',
    summary: 'Make a new data-key version active at once; older versions stay decrypt-only.',
    action: 'keys:rotate',
    body: KeyScopeSchema,
    status: 200,
    response: RotateResponseSchema,
    handler: ({ vault, caller, body }) => vault.rotateKeys(caller, body as KeyScope),
  },
  {
    method: 'post',
    path: '/v1/keys/rewrap',
    operationId: 'rewrapKeys',
    summary: 'Re-wrap every data key under the current (or a new) KEK; no record is touched.',
    action: 'keys:rotate',
    body: RewrapRequestSchema,
    status: 200,
    response: RewrapResponseSchema,
    handler: ({ vault, caller, body }) => vault.rewrapKeys(caller, (body as RewrapRequest).target),
  },
  {
    method: 'post',
    path: '/v1/keys/reencrypt',
    operationId: 'reencryptRecords',
    summary: 'Start a background job moving records to the active data key; poll GET /v1/jobs/{id}.',
    action: 'keys:rotate',
    body: KeyScopeSchema,
    status: 202,
    response: JobResponseSchema,
    handler: ({ vault, caller, body }) => vault.startReencrypt(caller, body as KeyScope),
  },
  {
    method: 'get',
    path: '/v1/jobs/:id',
    operationId: 'getJob',
    summary: 'Progress of a background job: done, failed, rate and ETA.',
    action: 'keys:read',
    status: 200,
    response: JobSchema,
    errors: ['not_found'],
    handler: ({ vault, caller, params }) => {
      if (!/^[0-9a-f-]{36}$/.test(params.id)) throw new VaultError('not_found', 'No such job.');
      return vault.jobStatus(caller, params.id);
    },
  },
  {
    method: 'post',
    path: '/v1/keys/:version/retire',
    operationId: 'retireKey',
    summary: 'Retire a decrypt-only data-key version; refused while records still use it.',
    action: 'keys:rotate',
    body: RetireRequestSchema,
    status: 200,
    response: KeyChangeResponseSchema,
    errors: ['not_found', 'key_active', 'key_in_use', 'key_state_conflict'],
    handler: ({ vault, caller, body, params }) =>
      vault.retireKey(caller, (body as { tenant?: string }).tenant ?? 'default', versionParam(params)),
  },
  {
    method: 'post',
    path: '/v1/keys/:version/destroy',
    operationId: 'destroyKey',
    summary: 'Crypto-shred a retired data-key version (irreversible; needs `confirm`).',
    action: 'keys:destroy',
    body: DestroyRequestSchema,
    status: 200,
    response: KeyChangeResponseSchema,
    errors: ['not_found', 'confirmation_required', 'key_active', 'key_in_use', 'key_state_conflict'],
    handler: ({ vault, caller, body, params }) => {
      const { tenant, confirm } = body as DestroyRequest;
      return vault.destroyKey(caller, tenant ?? 'default', versionParam(params), confirm);
    },
  },
);

export const PUBLIC_ROUTES = [
  { path: '/healthz', summary: 'Liveness: the process answers.', response: HealthSchema },
  { path: '/readyz', summary: 'Readiness: the database and keys are usable (503 otherwise).', response: ReadinessSchema },
  { path: '/openapi.json', summary: 'This OpenAPI 3.1 document.', response: Type.Object({}, { description: 'An OpenAPI 3.1 document.' }) },
] as const;
