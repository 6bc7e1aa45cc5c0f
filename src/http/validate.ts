import { TSchema } from '@sinclair/typebox';
import { TypeCheck, TypeCompiler, ValueError } from '@sinclair/typebox/compiler';
import { VaultError } from '../errors';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/**
 * Checks a request part against its schema; throws a 400 naming the first offending field and
 * (for batches) the item index. Messages describe the rule, never the submitted value.
 */
export function validate<T>(schema: TSchema, input: unknown, where: 'body' | 'query'): T {
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  if (check.Check(input)) return input as T;
  const error = check.Errors(input).First()!;
  const index = /^\/(?:items|tokens)\/(\d+)/.exec(error.path)?.[1];
  // An unknown field's name came from the caller and could be a value: name its parent instead.
  const unknownField = error.message.startsWith('Unexpected property');
  const path = unknownField ? error.path.replace(/\/[^/]*$/, '') : error.path;
  const message = unknownField ? `unknown field (allowed: ${allowedFields(error.schema)})` : describe(error);
  throw new VaultError('invalid_request', `${where}${path || ''}: ${message}`, {
    path: path || '/',
    ...(index !== undefined ? { index: Number(index) } : {}),
  });
}

function allowedFields(schema: TSchema): string {
  const properties = (schema as { properties?: Record<string, unknown> }).properties;
  return properties ? Object.keys(properties).join(', ') : 'none';
}

function describe(error: ValueError): string {
  const schema = error.schema as TSchema & { anyOf?: { const?: unknown }[] };
  if (schema.anyOf?.every((s) => typeof s.const === 'string')) {
    return `must be one of: ${schema.anyOf.map((s) => s.const).join(', ')}`;
  }
  return error.message.replace(/^Expected/, 'expected');
}
