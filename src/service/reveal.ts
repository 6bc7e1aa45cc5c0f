import { DATA_TYPE_SPECS } from '../domain/data-types';
import type { Reveal } from '../domain/types';
import { decide, leastReveal } from '../policy/policy';
import type { TokenRecord } from '../store/vault-store';
import type { Caller, VaultDeps } from './context';
import { openRecord } from './open-record';

/**
 * The reveal level the policy gives the caller on a record for detokenize (and the stated
 * purpose), lowered to `asked` when given; undefined when the policy refuses.
 */
export function revealLevel(deps: VaultDeps, caller: Caller, record: TokenRecord, purpose?: string, asked?: Reveal): Reveal | undefined {
  const decision = decide(deps.policy(), caller.principal, 'detokenize', { tenant: record.tenant, type: record.type, purpose });
  if (!decision.allow) return undefined;
  return asked ? leastReveal(asked, decision.reveal) : decision.reveal;
}

/**
 * A record's value at a reveal level: plain, masked, or null when redacted (not even opened).
 * 'integrity_failed' when the record or its key record does not open.
 */
export async function revealValue(deps: VaultDeps, record: TokenRecord, reveal: Reveal): Promise<string | null | 'integrity_failed'> {
  if (reveal === 'redacted') return null;
  const opened = await openRecord(deps, record);
  if (!opened) return 'integrity_failed';
  const plain = opened.toString('utf8');
  return reveal === 'plain' ? plain : DATA_TYPE_SPECS[record.type].mask(plain);
}
