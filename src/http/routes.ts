import { TSchema } from '@sinclair/typebox';
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
  TokenizeRequest,
  TokenizeRequestSchema,
  TokenizeResponseSchema,
} from '../contract/schemas';
import { VaultError } from '../errors';
import { DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE } from '../service/audit-queries';
import type { Caller } from '../service/context';
import type { Vault } from '../service/vault';

export interface RouteInput {
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
  handler: (input: RouteInput) => Promise<unknown>;
}

const TOKEN_PARAM = /^[A-Za-z0-9_@.+-]{1,128}$/;

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
    handler: ({ vault, caller, body }) => vault.detokenize(caller, body as DetokenizeRequest),
  },
  {
    method: 'get',
    path: '/v1/tokens/:token',
    operationId: 'getTokenMetadata',
    summary: "A token's metadata (never its value).",
    action: 'read-metadata',
    status: 200,
    response: TokenMetadataSchema,
    handler: ({ vault, caller, params }) => vault.readMetadata(caller, tokenParam(params)),
  },
  {
    method: 'delete',
    path: '/v1/tokens/:token',
    operationId: 'deleteToken',
    summary: 'Delete a token and its ciphertext.',
    action: 'delete',
    status: 204,
    handler: ({ vault, caller, params }) => vault.deleteToken(caller, tokenParam(params)),
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

export const PUBLIC_ROUTES = [
  { path: '/healthz', summary: 'Liveness: the process answers.', response: HealthSchema },
  { path: '/readyz', summary: 'Readiness: the database and keys are usable (503 otherwise).', response: ReadinessSchema },
  { path: '/openapi.json', summary: 'This OpenAPI 3.1 document.', response: undefined },
] as const;
