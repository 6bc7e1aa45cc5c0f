import { VaultError } from '../errors';
import { Action } from '../policy/policy';
import { Caller, VaultDeps, auditEntry } from './context';

/**
 * Refuses a caller that no grant gives the action at all (see `mayEver`), the coarse check every
 * API operation passes before its use case decides on tenant, type and purpose. The refusal is
 * audited (under `auditAction`, when the operation files its rows under another name) before it is
 * reported, and the use case is never reached, so it is audited once.
 */
export async function refuseUngranted(deps: VaultDeps, caller: Caller, action: Action, auditAction: string = action): Promise<never> {
  await deps.audit.append(auditEntry(deps, caller, { action: auditAction, outcome: 'deny', reason: `no ${action} grant` }));
  throw new VaultError('forbidden', `This caller may not ${action}.`);
}
