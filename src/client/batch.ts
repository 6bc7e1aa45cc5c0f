/** The most items or tokens the vault takes in one request. */
export const MAX_BATCH = 1000;

/** Splits `items` into consecutive chunks of at most `size`, in order. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1 || size > MAX_BATCH) throw new RangeError(`batch size must be 1–${MAX_BATCH}`);
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += size) result.push(items.slice(start, start + size));
  return result;
}
