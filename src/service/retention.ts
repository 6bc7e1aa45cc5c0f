import type { TokenizeItem } from '../contract/schemas';
import { VaultError } from '../errors';
import type { RetentionLimits } from './context';

/**
 * The lifetime an item gets under its data type's retention limits: its own ttlSeconds, else the
 * type's default, else the type's maximum (so that no record outlives the maximum). Asking for more
 * than the maximum is refused, never silently shortened. Undefined: the record never expires.
 */
export function retainedTtlSeconds(limits: RetentionLimits, item: TokenizeItem, index: number): number | undefined {
  const { defaultTtlSeconds, maxTtlSeconds } = limits[item.type] ?? {};
  if (item.ttlSeconds !== undefined && maxTtlSeconds !== undefined && item.ttlSeconds > maxTtlSeconds) {
    throw new VaultError(
      'ttl_exceeds_retention',
      `items[${index}]: ttlSeconds is above the retention limit of ${item.type} values (maxTtlSeconds ${maxTtlSeconds}); ask for ${maxTtlSeconds} or less, or omit ttlSeconds to get the default.`,
      { index, type: item.type, maxTtlSeconds },
    );
  }
  return item.ttlSeconds ?? defaultTtlSeconds ?? maxTtlSeconds;
}
