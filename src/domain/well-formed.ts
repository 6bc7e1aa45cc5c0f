/**
 * A JSON string may hold a lone UTF-16 surrogate (`"\ud800"`). Encoded to UTF-8 it becomes U+FFFD,
 * so the vault would store and give back another value than it was sent, and distinct inputs would
 * share one deterministic token. Such strings are refused, never repaired.
 */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/**
 * JSON path segments of the first string (object key or value) holding a lone surrogate, or
 * undefined. Like the schemas, it looks no deeper than 64 levels (the schemas refuse deeper bodies).
 */
export function findLoneSurrogate(input: unknown, path: (string | number)[] = []): (string | number)[] | undefined {
  if (path.length > 64) return undefined;
  if (typeof input === 'string') return hasLoneSurrogate(input) ? path : undefined;
  if (Array.isArray(input)) {
    for (const [index, element] of input.entries()) {
      const found = findLoneSurrogate(element, [...path, index]);
      if (found) return found;
    }
  } else if (input && typeof input === 'object') {
    for (const [key, value] of Object.entries(input)) {
      if (hasLoneSurrogate(key)) return [...path, key];
      const found = findLoneSurrogate(value, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}
