import { VaultError } from '../errors';
import { Action, mayEver } from '../policy/policy';
import { Caller, VaultDeps, auditEntry } from './context';

/**
 * The coarse check every API operation passes before its use case decides on tenant, type and
 * purpose: some grant of the caller's roles names the action. A refusal is audited (under
 * `auditAction`, when the operation files its rows under another name) before it is reported, and
 * the use case is never reached, so it is audited once.
 */
export async function requireGrant(deps: VaultDeps, caller: Caller, action: Action, auditAction: string = action): Promise<void> {
  if (mayEver(deps.policy(), caller.principal, action)) return;
  await deps.audit.append(auditEntry(deps, caller, { action: auditAction, outcome: 'deny', reason: `no ${action} grant` }));
  throw new VaultError('forbidden', `This caller may not ${action}.`);
}
