import { display, revealsAnything } from '../domain/data-types';
import type { Reveal } from '../domain/types';
import { decide, leastReveal } from '../policy/policy';
import type { TokenRecord } from '../store/vault-store';
import type { Caller, VaultDeps } from './context';
import { openRecord } from './open-record';
import { ERASED } from './subject-layer';

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
 * A record's value at a reveal level, and the level actually given (`redacted`, with a null value
 * and the record not even opened, when the level shows nothing of this type). 'integrity_failed'
 * when the record or its key record does not open; ERASED when its subject's key was destroyed.
 */
export async function revealValue(
  deps: VaultDeps,
  record: TokenRecord,
  reveal: Reveal,
): Promise<{ value: string | null; reveal: Reveal } | 'integrity_failed' | typeof ERASED> {
  if (!revealsAnything(record.type, reveal)) return { value: null, reveal: 'redacted' };
  const opened = await openRecord(deps, record);
  if (opened === ERASED) return ERASED;
  if (!opened) return 'integrity_failed';
  return display(record.type, reveal, opened.toString('utf8'));
}
