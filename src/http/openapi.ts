import { TSchema } from '@sinclair/typebox';
import { ErrorResponseSchema, ReadinessSchema } from '../contract/schemas';
import { ERROR_CATALOGUE, ErrorCode } from '../errors';
import { API_ROUTES, PUBLIC_ROUTES } from './routes';

/** TypeBox schemas are JSON Schema already; this drops TypeBox's symbol keys. */
function plain(schema: TSchema): object {
  return JSON.parse(JSON.stringify(schema));
}

const json = (schema: TSchema) => ({ 'application/json': { schema: plain(schema) } });
const text = (mediaType: string) => ({ [mediaType]: { schema: { type: 'string' } } });

/**
 * What every /v1 operation can answer, whatever it does: the request pipeline (concurrency limit,
 * authentication and its brake, per-principal rate limit, JSON body reader, the sensitive
 * authentication data check, validation) and the service behind it (policy, audit, store, keys).
 */
const EVERY_API_ERROR: ErrorCode[] = [
  'malformed_json',
  'invalid_request',
  'sensitive_authentication_data',
  'unauthorized',
  'forbidden',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'too_many_auth_failures',
  'internal_error',
  'overloaded',
  'audit_unavailable',
  'store_unavailable',
  'key_unavailable',
  'kms_unavailable',
];

/** The unauthenticated routes pass only the concurrency limit (if any) before answering. */
const PUBLIC_ERRORS: ErrorCode[] = ['internal_error', 'overloaded'];

/** One response per error status, naming its codes (also machine-readable as `x-error-codes`). */
function errorResponses(codes: readonly ErrorCode[]): Record<string, object> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERROR_CATALOGUE[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      { description: `Error: ${list.map((c) => `\`${c}\``).join(', ')}`, 'x-error-codes': list, content: json(ErrorResponseSchema) },
    ]),
  );
}

/** OpenAPI 3.1, generated from the same route table and schemas that validate requests. */
export function buildOpenApi(version: string, { metrics = true }: { metrics?: boolean } = {}): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const route of API_ROUTES) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const parameters = [
      ...[...route.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })),
      ...Object.entries((route.query as { properties?: Record<string, TSchema> } | undefined)?.properties ?? {}).map(([name, schema]) => ({
        name,
        in: 'query',
        required: false,
        schema: plain(schema),
      })),
    ];
    (paths[path] ??= {})[route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      description: `Requires policy action \`${route.action}\`.`,
      security: [{ apiKey: [] }],
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: json(route.body) } } : {}),
      responses: {
        [route.status]: route.response
          ? { description: 'Success', content: { ...json(route.response), ...(route.textMediaType ? text(route.textMediaType) : {}) } }
          : { description: 'Success, no body' },
        ...errorResponses([...EVERY_API_ERROR, ...(route.errors ?? [])]),
      },
    };
  }
  for (const route of PUBLIC_ROUTES) {
    if (route.needsMetrics && !metrics) continue;
    const content = route.mediaType ? { [route.mediaType]: { schema: plain(route.response) } } : json(route.response);
    const responses: Record<string, object> = {
      200: { description: route.description ?? 'OK', content },
      ...errorResponses(PUBLIC_ERRORS),
    };
    if (route.path === '/readyz') {
      // Not ready is a readiness body; an overloaded vault answers with an error body.
      responses[503] = {
        description: 'Not ready (a readiness body naming the failed checks), or `overloaded` (an error body)',
        'x-error-codes': ['overloaded'],
        content: { 'application/json': { schema: { anyOf: [plain(ReadinessSchema), plain(ErrorResponseSchema)] } } },
      };
    }
    paths[route.path] = { get: { summary: route.summary, security: [], responses } };
  }
  const catalogue = Object.entries(ERROR_CATALOGUE)
    .map(([code, e]) => `- \`${code}\` (${e.status}): ${e.message}`)
    .join('\n');
  return {
    openapi: '3.1.0',
    info: {
      title: 'pii-vault',
      version,
      description: `PII tokenization vault. Errors are \`{"error":{"code","message","requestId"}}\`; codes:\n${catalogue}`,
    },
    components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'API key issued by `pii-vault init`.' } } },
    paths,
  };
}
