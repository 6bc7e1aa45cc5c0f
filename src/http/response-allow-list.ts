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
type Check = (value: unknown) => boolean;

/** One schema, compiled twice: whether a value is exactly what it declares, and the copy holding only that. */
interface AllowList {
  exact: Check;
  project: Projection;
}

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

const compiled = new WeakMap<TSchema, AllowList>();

/**
 * The response schema as an allow-list: `value` holding only what the schema declares
 * (undeclared properties are dropped, at any depth), checked by functions compiled once per schema.
 * A value of the wrong type, or a required property missing, throws UndeclaredResponseError:
 * nothing the schema does not describe leaves the vault. Formats and patterns of strings are not
 * checked (the vault's own output is trusted to have them); shapes, types and constants are.
 *
 * Most answers are built by the vault's own code with exactly the declared properties: such a value
 * is checked without being copied (a batch of 1,000 items would otherwise be rebuilt item by item)
 * and returned as it is. Anything else — an undeclared property at any depth, an object that is not
 * a plain one or array, a `toJSON` that JSON.stringify would call — is copied as above.
 */
export function allowListed(schema: TSchema, value: unknown): unknown {
  let allowList = compiled.get(schema);
  if (!allowList) {
    allowList = compile(schema as SchemaNode);
    compiled.set(schema, allowList);
  }
  if (allowList.exact(value)) return value;
  const out = allowList.project(value);
  if (out === MISFIT) throw new UndeclaredResponseError();
  return out;
}

function compile(schema: SchemaNode): AllowList {
  const fits = leaf(schema);
  if (fits) return { exact: fits, project: (value) => (fits(value) ? value : MISFIT) };
  if (schema.anyOf) return union(schema.anyOf.map(compile));
  switch (schema.type) {
    case 'object':
      return object(schema);
    case 'array':
      return array(compile(schema.items ?? {}));
    default:
      throw new Error(`response schemas of type ${schema.type} are not supported`);
  }
}

/** The check of a schema without properties or items (constants, enums, primitives, Unknown); undefined for the others. */
function leaf(schema: SchemaNode): Check | undefined {
  if (schema.anyOf?.every((member) => 'const' in member)) {
    const allowed = new Set(schema.anyOf.map((member) => member.const));
    return (value) => allowed.has(value);
  }
  if (schema.anyOf) return undefined;
  if ('const' in schema) return (value) => value === schema.const;
  switch (schema.type) {
    case 'string':
    case 'boolean':
      return (value) => typeof value === schema.type;
    case 'number':
      return (value) => typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return (value) => Number.isInteger(value);
    case 'null':
      return (value) => value === null;
    case undefined:
      return () => true; // Type.Unknown(): declared as anything
    default:
      return undefined;
  }
}

/**
 * Exact when one member is (it declares every property the value has). Otherwise the projection
 * is the member that fits and keeps the most of the value's properties (the first such, in declared
 * order): a member declaring a subset of another's properties fits too, but keeps less.
 */
function union(members: AllowList[]): AllowList {
  const exact: Check = (value) => {
    for (let i = 0; i < members.length; i++) if (members[i].exact(value)) return true;
    return false;
  };
  const project: Projection = (value) => {
    const present = isRecord(value) ? Object.keys(value).filter((k) => value[k] !== undefined).length : 0;
    let best: unknown = MISFIT;
    let bestKept = -1;
    for (const member of members) {
      const out = member.project(value);
      if (out === MISFIT) continue;
      const kept = isRecord(out) ? Object.keys(out).length : 0;
      if (kept === present) return out;
      if (kept > bestKept) [best, bestKept] = [out, kept];
    }
    return best;
  };
  return { exact, project };
}

function array(item: AllowList): AllowList {
  const exact: Check = (value) => {
    if (!isPlainArray(value)) return false;
    for (let i = 0; i < value.length; i++) if (!item.exact(value[i])) return false;
    return true;
  };
  const project: Projection = (value) => {
    if (!Array.isArray(value)) return MISFIT;
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      out[i] = item.project(value[i]);
      if (out[i] === MISFIT) return MISFIT;
    }
    return out;
  };
  return { exact, project };
}

function object(schema: SchemaNode): AllowList {
  const required = new Set(schema.required ?? []);
  const properties = Object.entries(schema.properties ?? {}).map(([key, child], index) => ({
    key,
    index,
    required: required.has(key),
    ...compile(child),
  }));
  const declared = new Map(properties.map((p) => [p.key, p]));
  const patterns = Object.entries(schema.patternProperties ?? {}).map(([pattern, child]) => ({
    pattern: new RegExp(pattern),
    ...compile(child),
  }));
  // Only an explicit `additionalProperties: true` lets undeclared properties through (the OpenAPI document).
  const open = schema.additionalProperties === true;

  // Every key JSON.stringify would write (own, enumerable) is among those for-in visits, so each is
  // declared (by name or pattern) and fits; an undefined value is one JSON.stringify leaves out.
  // Declared keys must also come in declared order, then the others, as the copy would put them:
  // the bytes of an answer do not depend on which path made it.
  const exact: Check = (value) => {
    if (!isPlainObject(value)) return false;
    let requiredPresent = 0;
    let lastIndex = -1;
    for (const key in value) {
      const child = value[key];
      if (child === undefined) continue;
      const property = declared.get(key);
      if (property) {
        if (property.index < lastIndex || !property.exact(child)) return false;
        lastIndex = property.index;
        if (property.required) requiredPresent++;
      } else if (open || patterns.some((p) => p.pattern.test(key) && p.exact(child))) lastIndex = properties.length;
      else return false;
    }
    return requiredPresent === required.size;
  };

  const project: Projection = (value) => {
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
  return { exact, project };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An object JSON.stringify writes as its own properties: a plain one (not a class instance, a Buffer
 * or a Date) with no `toJSON`, own or inherited, enumerable or not.
 */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (!isRecord(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return (prototype === Object.prototype || prototype === null) && value.toJSON === undefined;
}

function isPlainArray(value: unknown): value is unknown[] {
  return Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype && (value as { toJSON?: unknown }).toJSON === undefined;
}
