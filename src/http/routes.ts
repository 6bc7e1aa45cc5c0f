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
  AccessLogRequest,
  AccessLogRequestSchema,
  AccessLogResponseSchema,
  ConsentRequest,
  ConsentRequestSchema,
  ConsentResponseSchema,
  EraseResponseSchema,
  SubjectExportSchema,
  SubjectRequest,
  SubjectRequestSchema,
  NoQuerySchema,
  PolicyReportQuerySchema,
  PolicyReportSchema,
} from '../contract/schemas';
import { ErrorCode, VaultError } from '../errors';
import type { Action } from '../policy/policy';
import { DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE } from '../service/audit-queries';
import { policyReportMarkdown } from '../service/policy-report-markdown';
import type { Caller } from '../service/context';
import type { Vault } from '../service/vault';
import type { VaultMetrics } from './metrics';

interface RouteInput {
  vault: Vault;
  caller: Caller;
  body: unknown;
  query: Record<string, string>;
  params: Record<string, string>;
}

/**
 * One API operation: its path, the policy action it needs, its contract and its handler. The
 * router, its pipeline (app.ts) and the OpenAPI document are built from these; nothing else
 * declares a route.
 */
export interface ApiRoute {
  method: 'get' | 'post' | 'delete';
  path: string;
  operationId: string;
  summary: string;
  /** Checked (a refusal audited) before the body is read; the use case then decides on tenant, type and purpose. */
  action: Action;
  /** The name the coarse check's refusal is audited under, when the use case audits this operation under another. */
  auditAction?: string;
  body?: TSchema;
  query?: TSchema;
  status: number;
  /** The allow-list of a success: whatever the handler returns is reduced to what this declares. */
  response?: TSchema;
  /** A success may instead be text of this media type, when the handler returns a TextReply. */
  textMediaType?: string;
  /** Error codes this operation can answer besides those every /v1 operation can (see openapi.ts). */
  errors?: ErrorCode[];
  handler: (input: RouteInput) => Promise<unknown>;
}

/** What the public routes answer from: the vault, its metrics, its OpenAPI document. */
export interface ServerContext {
  vault: Vault;
  metrics?: VaultMetrics;
  openapi: object;
}

interface Reply {
  status: number;
  body: unknown;
  /** The exact Content-Type header, when not JSON. */
  contentType?: string;
}

/** An unauthenticated route: no API key, no policy action. Marked so explicitly; anything else is an ApiRoute. */
export interface PublicRoute {
  method: 'get';
  path: string;
  summary: string;
  public: true;
  /** Served outside the concurrency limit: a probe failing under load would make an orchestrator restart a healthy vault. */
  unlimited: boolean;
  /** Served only when the vault exports metrics. */
  needsMetrics?: boolean;
  /** Default application/json; a body of another type is a string, sent as it is (with the reply's contentType). */
  mediaType?: 'text/plain';
  /** The allow-list of the answer (of every status it gives; /readyz answers 503 with the same shape). */
  response: TSchema;
  /** What OpenAPI says of a 200. */
  description?: string;
  handler: (context: ServerContext) => Promise<Reply> | Reply;
}

export type Route = ApiRoute | PublicRoute;

/** A success answered as text of the route's `textMediaType` instead of JSON. */
export class TextReply {
  constructor(readonly text: string) {}
}

export function isPublic(route: Route): route is PublicRoute {
  return 'public' in route && route.public;
}

const TOKEN_PARAM = new RegExp(`^[A-Za-z0-9_@.+-]{1,${MAX_TOKEN_LENGTH}}$`);

function tokenParam(params: Record<string, string>): string {
  const token = params.token;
  if (!TOKEN_PARAM.test(token)) throw new VaultError('not_found', 'No such token.');
  return token;
}

export const API_ROUTES: ApiRoute[] = [
  {
    method: 'post',
    path: '/v1/tokenize',
    operationId: 'tokenize',
    summary: 'Tokenize up to 1,000 values atomically; returns one token per item in request order.',
    action: 'tokenize',
    body: TokenizeRequestSchema,
    status: 200,
    response: TokenizeResponseSchema,
    errors: ['invalid_value', 'unsupported_format', 'too_many_items', 'ttl_exceeds_retention', 'too_many_purposes', 'token_collision'],
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
    auditAction: 'audit:verify',
    status: 200,
    response: AuditVerifyResponseSchema,
    handler: ({ vault, caller }) => vault.verifyAudit(caller),
  },
  {
    method: 'get',
    path: '/v1/policy/report',
    operationId: 'policyReport',
    summary:
      'Who may do what under the policy in force: per role and principal, each action × data type with its reveal level and required purposes, and each type’s retention (JSON, or Markdown with `format=markdown`).',
    action: 'policy:read',
    query: PolicyReportQuerySchema,
    status: 200,
    response: PolicyReportSchema,
    textMediaType: 'text/markdown',
    handler: async ({ vault, caller, query }) => {
      const report = await vault.policyReport(caller);
      return query.format === 'markdown' ? new TextReply(policyReportMarkdown(report)) : report;
    },
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

// Data subject rights: the subject id is personal data, so it travels in the body, never in the URL.
API_ROUTES.push(
  {
    method: 'post',
    path: '/v1/subjects/export',
    operationId: 'exportSubject',
    summary: "Every record of a data subject with its value at your reveal level, and the subject's consent (streamed).",
    action: 'subject:export',
    body: SubjectRequestSchema,
    query: NoQuerySchema,
    status: 200,
    response: SubjectExportSchema,
    handler: ({ vault, caller, body }) => vault.exportSubject(caller, body as SubjectRequest),
  },
  {
    method: 'post',
    path: '/v1/subjects/access-log',
    operationId: 'subjectAccessLog',
    summary: 'Every audited decision that touched a data subject: who, when, what, for which purpose (streamed).',
    action: 'subject:export',
    auditAction: 'subject:access-log',
    body: AccessLogRequestSchema,
    query: NoQuerySchema,
    status: 200,
    response: AccessLogResponseSchema,
    handler: ({ vault, caller, body }) => vault.subjectAccessLog(caller, body as AccessLogRequest),
  },
  {
    method: 'post',
    path: '/v1/subjects/erase',
    operationId: 'eraseSubject',
    summary: 'Erase a data subject: every record, and the link from its audit handle to it (irreversible).',
    action: 'subject:erase',
    body: SubjectRequestSchema,
    query: NoQuerySchema,
    status: 200,
    response: EraseResponseSchema,
    handler: ({ vault, caller, body }) => vault.eraseSubject(caller, body as SubjectRequest),
  },
  {
    method: 'post',
    path: '/v1/subjects/consent',
    operationId: 'changeSubjectConsent',
    summary: "Grant or withdraw purposes in a data subject's consent; effective at once on every instance.",
    action: 'subject:consent',
    body: ConsentRequestSchema,
    query: NoQuerySchema,
    status: 200,
    response: ConsentResponseSchema,
    errors: ['too_many_purposes'],
    handler: ({ vault, caller, body }) => vault.changeConsent(caller, body as ConsentRequest),
  },
);

export const PUBLIC_ROUTES: PublicRoute[] = [
  {
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: the process answers.',
    public: true,
    unlimited: true,
    response: HealthSchema,
    handler: () => ({ status: 200, body: { status: 'ok' } }),
  },
  {
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: the database and keys are usable (503 otherwise).',
    public: true,
    unlimited: true,
    response: ReadinessSchema,
    handler: async ({ vault }) => {
      const checks = await vault.readiness();
      const ok = Object.values(checks).every(Boolean);
      return {
        status: ok ? 200 : 503,
        body: {
          status: ok ? 'ready' : 'unavailable',
          checks: Object.fromEntries(Object.entries(checks).map(([name, up]) => [name, up ? 'ok' : 'unavailable'])),
        },
      };
    },
  },
  {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (no values or tokens in them); expose it only to your scraper.',
    public: true,
    unlimited: true,
    needsMetrics: true,
    mediaType: 'text/plain',
    response: Type.String(),
    description: 'Prometheus text exposition format',
    handler: async ({ metrics }) => ({ status: 200, body: await metrics!.registry.metrics(), contentType: metrics!.registry.contentType }),
  },
  {
    method: 'get',
    path: '/openapi.json',
    summary: 'This OpenAPI 3.1 document.',
    public: true,
    unlimited: false,
    response: Type.Object({}, { additionalProperties: true, description: 'An OpenAPI 3.1 document.' }),
    handler: ({ openapi }) => ({ status: 200, body: openapi }),
  },
];

/** Every route the vault serves, in the order the router tries them (the hot ones early). */
export const ROUTES: Route[] = [...API_ROUTES, ...PUBLIC_ROUTES];
