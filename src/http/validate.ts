import { TSchema } from '@sinclair/typebox';
import { TypeCheck, TypeCompiler, ValueError } from '@sinclair/typebox/compiler';
import { findLoneSurrogate } from '../domain/well-formed';
import { VaultError } from '../errors';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/**
 * Checks a request part against its schema; throws a 400 naming the first offending field and
 * (for batches) the item index. Messages describe the rule, never the submitted value, and name
 * only fields the schema declares: a key the caller chose (a metadata key, an unknown field) could
 * itself be personal data, so the path stops at the object that holds it.
 */
export function validate<T>(schema: TSchema, input: unknown, where: 'body' | 'query'): T {
  refuseLoneSurrogates(schema, input, where);
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  if (check.Check(input)) return input as T;
  const error = check.Errors(input).First()!;
  const path = declaredPath(schema, error.path.split('/').slice(1));
  const message = error.message.startsWith('Unexpected property')
    ? unknownField(error.schema)
    : path === error.path
      ? describe(error)
      : `an entry: ${describe(error)}`;
  throw new VaultError('invalid_request', `${where}${path}: ${message}`, { path: path || '/', ...itemIndex(error.path) });
}

/** Item values are `invalid_value` like any other bad value; a lone surrogate elsewhere makes the request invalid. */
function refuseLoneSurrogates(schema: TSchema, input: unknown, where: 'body' | 'query'): void {
  const segments = findLoneSurrogate(input);
  if (!segments) return;
  const pointer = segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
  const path = declaredPath(schema, pointer.split('/').slice(1));
  const isItemValue = /^\/items\/\d+\/value$/.test(path);
  throw new VaultError(
    isItemValue ? 'invalid_value' : 'invalid_request',
    `${where}${path}: must be well-formed Unicode (it holds a lone UTF-16 surrogate)`,
    { path: path || '/', ...itemIndex(path) },
  );
}

function itemIndex(pointer: string): { index?: number } {
  const index = /^\/(?:items|tokens)\/(\d+)/.exec(pointer)?.[1];
  return index !== undefined ? { index: Number(index) } : {};
}

type SchemaNode = TSchema & { type?: string; items?: TSchema; properties?: Record<string, TSchema>; anyOf?: TSchema[] };

/** The longest prefix of a JSON pointer made of array indices and property names the schema declares. */
function declaredPath(schema: TSchema, segments: string[]): string {
  let kept = '';
  let node: TSchema | undefined = schema;
  for (const segment of segments) {
    node = declaredChild(node, segment.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (!node) break;
    kept += `/${segment}`;
  }
  return kept;
}

function declaredChild(schema: SchemaNode, segment: string): TSchema | undefined {
  if (schema.type === 'array' && /^\d+$/.test(segment)) return schema.items;
  if (schema.properties && Object.hasOwn(schema.properties, segment)) return schema.properties[segment];
  for (const member of (schema.anyOf ?? []) as SchemaNode[]) {
    const child = declaredChild(member, segment);
    if (child) return child;
  }
  return undefined;
}

function unknownField(schema: TSchema): string {
  const { properties, patternProperties } = schema as { properties?: Record<string, unknown>; patternProperties?: Record<string, unknown> };
  if (patternProperties) return `a key is not allowed (keys must match ${Object.keys(patternProperties).join(' or ')})`;
  return `unknown field (allowed: ${properties && Object.keys(properties).length ? Object.keys(properties).join(', ') : 'none'})`;
}

function describe(error: ValueError): string {
  const schema = error.schema as TSchema & { anyOf?: { const?: unknown }[] };
  if (schema.anyOf?.every((s) => typeof s.const === 'string')) {
    return `must be one of: ${schema.anyOf.map((s) => s.const).join(', ')}`;
  }
  return error.message.replace(/^Expected/, 'expected');
}
