import type { TSchema } from '@sinclair/typebox';

/** A handler answered something its response schema does not describe: a bug, answered as internal_error. */
export class UndeclaredResponseError extends Error {
  constructor(readonly path: string) {
    super(`the response does not fit its schema at ${path || '/'}`);
    this.name = 'UndeclaredResponseError';
  }
}

type Projection = (value: unknown, path: string) => unknown;

interface SchemaNode {
  type?: string;
  const?: unknown;
  anyOf?: SchemaNode[];
  items?: SchemaNode;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  patternProperties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
}

const compiled = new WeakMap<TSchema, Projection>();

/**
 * The response schema as an allow-list: a copy of `value` holding only what the schema declares
 * (undeclared properties are dropped, at any depth), built by a function compiled once per schema.
 * A value of the wrong type, or a required property missing, throws UndeclaredResponseError:
 * nothing the schema does not describe leaves the vault. Formats and patterns are not checked
 * (the vault's own output is trusted to have them); shapes and types are.
 */
export function allowListed(schema: TSchema, value: unknown): unknown {
  let project = compiled.get(schema);
  if (!project) {
    project = compile(schema as SchemaNode);
    compiled.set(schema, project);
  }
  return project(value, '');
}

function compile(schema: SchemaNode): Projection {
  if (schema.anyOf) return union(schema.anyOf.map(compile));
  if ('const' in schema) return (value, path) => (value === schema.const ? value : fail(path));
  switch (schema.type) {
    case 'object':
      return object(schema);
    case 'array':
      return array(compile(schema.items ?? {}));
    case 'string':
    case 'boolean':
      return primitive((value) => typeof value === schema.type);
    case 'number':
      return primitive((value) => typeof value === 'number' && Number.isFinite(value));
    case 'integer':
      return primitive((value) => Number.isInteger(value));
    case 'null':
      return primitive((value) => value === null);
    case undefined:
      return (value) => value; // Type.Unknown(): declared as anything
    default:
      throw new Error(`response schemas of type ${schema.type} are not supported`);
  }
}

/** A caller-chosen key (a metadata key) may be `__proto__`: defined, never assigned. */
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function fail(path: string): never {
  throw new UndeclaredResponseError(path);
}

function primitive(fits: (value: unknown) => boolean): Projection {
  return (value, path) => (fits(value) ? value : fail(path));
}

/** The first member the value fits; members are tried in their declared order. */
function union(members: Projection[]): Projection {
  return (value, path) => {
    for (const member of members) {
      try {
        return member(value, path);
      } catch (err) {
        if (!(err instanceof UndeclaredResponseError)) throw err;
      }
    }
    return fail(path);
  };
}

function array(item: Projection): Projection {
  return (value, path) => {
    if (!Array.isArray(value)) return fail(path);
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = item(value[i], `${path}/${i}`);
    return out;
  };
}

function object(schema: SchemaNode): Projection {
  const required = new Set(schema.required ?? []);
  const properties = Object.entries(schema.properties ?? {}).map(([key, child]) => ({
    key,
    required: required.has(key),
    project: compile(child),
  }));
  const patterns = Object.entries(schema.patternProperties ?? {}).map(([pattern, child]) => ({
    pattern: new RegExp(pattern),
    project: compile(child),
  }));
  // Only an explicit `additionalProperties: true` lets undeclared properties through (the OpenAPI document).
  const open = schema.additionalProperties === true;
  return (value, path) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(path);
    const input = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const { key, required, project } of properties) {
      const child = input[key];
      if (child !== undefined) out[key] = project(child, `${path}/${key}`);
      else if (required) fail(`${path}/${key}`);
    }
    if (patterns.length > 0 || open) {
      for (const key of Object.keys(input)) {
        if (Object.hasOwn(out, key) || input[key] === undefined) continue;
        const matched = patterns.find((p) => p.pattern.test(key));
        if (matched) define(out, key, matched.project(input[key], `${path}/${key}`));
        else if (open) define(out, key, input[key]);
      }
    }
    return out;
  };
}
