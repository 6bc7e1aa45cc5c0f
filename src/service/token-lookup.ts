import { principalCoversTenant } from '../policy/policy';
import type { TokenRecord } from '../store/vault-store';
import type { Caller } from './context';

/**
 * Which record a token names for this caller. Token spaces are per tenant, so one string may name
 * records in several tenants: only those of tenants the caller may touch count (others look like
 * no record at all), and `tenant`, when given, picks one. A token left naming records in several
 * of the caller's tenants is ambiguous, never answered with one of them.
 */
export function resolveToken<R extends TokenRecord>(
  caller: Caller,
  candidates: readonly R[] | undefined,
  tenant?: string,
): R | 'not_found' | 'ambiguous' {
  const mine = (candidates ?? []).filter(
    (r) => principalCoversTenant(caller.principal, r.tenant) && (tenant === undefined || r.tenant === tenant),
  );
  if (mine.length === 0) return 'not_found';
  return mine.length === 1 ? mine[0] : 'ambiguous';
}
