import type { TSchema } from '@sinclair/typebox';

/** A handler answered something its response schema does not describe: a bug, answered as internal_error. */
export class UndeclaredResponseError extends Error {
  constructor() {
    super('the response does not fit its schema');
    this.name = 'UndeclaredResponseError';
  }
}

/** What a projection returns for a value that does not fit its schema (cheaper than throwing, in unions). */
const MISFIT = Symbol('misfit');
type Projection = (value: unknown) => unknown;

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
 * nothing the schema does not describe leaves the vault. Formats and patterns of strings are not
 * checked (the vault's own output is trusted to have them); shapes, types and constants are.
 */
export function allowListed(schema: TSchema, value: unknown): unknown {
  let project = compiled.get(schema);
  if (!project) {
    project = compile(schema as SchemaNode);
    compiled.set(schema, project);
  }
  const out = project(value);
  if (out === MISFIT) throw new UndeclaredResponseError();
  return out;
}

function compile(schema: SchemaNode): Projection {
  if (schema.anyOf?.every((member) => 'const' in member)) {
    const allowed = new Set(schema.anyOf.map((member) => member.const));
    return (value) => (allowed.has(value) ? value : MISFIT);
  }
  if (schema.anyOf) return union(schema.anyOf.map(compile));
  if ('const' in schema) return (value) => (value === schema.const ? value : MISFIT);
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

function primitive(fits: (value: unknown) => boolean): Projection {
  return (value) => (fits(value) ? value : MISFIT);
}

/**
 * The member that fits and keeps the most of the value's properties (the first such, in declared
 * order): a member declaring a subset of another's properties fits too, but keeps less.
 */
function union(members: Projection[]): Projection {
  return (value) => {
    const present = isRecord(value) ? Object.keys(value).filter((k) => value[k] !== undefined).length : 0;
    let best: unknown = MISFIT;
    let bestKept = -1;
    for (const member of members) {
      const out = member(value);
      if (out === MISFIT) continue;
      const kept = isRecord(out) ? Object.keys(out).length : 0;
      if (kept === present) return out;
      if (kept > bestKept) [best, bestKept] = [out, kept];
    }
    return best;
  };
}

function array(item: Projection): Projection {
  return (value) => {
    if (!Array.isArray(value)) return MISFIT;
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      out[i] = item(value[i]);
      if (out[i] === MISFIT) return MISFIT;
    }
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
  return (value) => {
    if (!isRecord(value)) return MISFIT;
    const out: Record<string, unknown> = {};
    for (const { key, required, project } of properties) {
      if (value[key] === undefined) {
        if (required) return MISFIT;
        continue;
      }
      const child = project(value[key]);
      if (child === MISFIT) return MISFIT;
      out[key] = child;
    }
    if (patterns.length === 0 && !open) return out;
    for (const key of Object.keys(value)) {
      if (Object.hasOwn(out, key) || value[key] === undefined) continue;
      const matched = patterns.find((p) => p.pattern.test(key));
      const child = matched ? matched.project(value[key]) : open ? value[key] : undefined;
      if (child === MISFIT) return MISFIT;
      // A caller-chosen key (a metadata key) may be `__proto__`: defined, never assigned.
      if (child !== undefined) Object.defineProperty(out, key, { value: child, enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
