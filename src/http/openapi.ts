import { TSchema } from '@sinclair/typebox';
import { ErrorResponseSchema } from '../contract/schemas';
import { ERROR_CATALOGUE } from '../errors';
import { API_ROUTES, PUBLIC_ROUTES } from './routes';

/** TypeBox schemas are JSON Schema already; this drops TypeBox's symbol keys. */
function plain(schema: TSchema): object {
  return JSON.parse(JSON.stringify(schema));
}

const json = (schema: TSchema) => ({ 'application/json': { schema: plain(schema) } });

/** OpenAPI 3.1, generated from the same route table and schemas that validate requests. */
export function buildOpenApi(version: string): object {
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
        [route.status]: route.response ? { description: 'Success', content: json(route.response) } : { description: 'Success, no body' },
        default: { description: 'Error (see the error catalogue in info.description)', content: json(ErrorResponseSchema) },
      },
    };
  }
  for (const route of PUBLIC_ROUTES) {
    paths[route.path] = {
      get: {
        summary: route.summary,
        security: [],
        responses: { 200: route.response ? { description: 'OK', content: json(route.response) } : { description: 'OK' } },
      },
    };
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
