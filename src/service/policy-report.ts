import type { PolicyPermission, PolicyReport } from '../contract/schemas';
import { DATA_TYPES, REVEAL_LEVELS, revealRank, type DataType, type Reveal } from '../domain/types';
import { VaultError } from '../errors';
import {
  ACTIONS,
  decide,
  mayWithoutPurpose,
  principalCoversTenant,
  PURPOSE_ACTIONS,
  purposesNamed,
  REVEALING_ACTIONS,
  VALUE_ACTIONS,
  type Action,
  type PolicyDocument,
  type Principal,
} from '../policy/policy';
import { auditEntry, type Caller, type RetentionLimits, type VaultDeps } from './context';

/**
 * The policy report of the policy in force, for a caller with `policy:read` (audited, allowed or
 * not). A caller scoped to some tenants sees every role, but only the principals confined to its
 * own tenants: the others' names and tenants are not its business.
 */
export async function readPolicyReport(deps: VaultDeps, caller: Caller): Promise<PolicyReport> {
  const policy = deps.policy();
  const allowed = mayWithoutPurpose(policy, caller.principal, 'policy:read');
  await deps.audit.append(
    auditEntry(deps, caller, { action: 'policy:read', outcome: allowed ? 'allow' : 'deny', reason: allowed ? null : 'no grant' }),
  );
  if (!allowed) throw new VaultError('forbidden', 'This caller may not read the policy report.');
  const shown = (principal: Principal) =>
    !principal.tenants.includes('*') && principal.tenants.every((tenant) => principalCoversTenant(caller.principal, tenant));
  return policyReport(policy, deps.retention, new Date(deps.now()), caller.principal.tenants.includes('*') ? undefined : shown);
}

/**
 * Who may do what under the policy: for every role and every principal, each action × data type
 * with the reveal level and the purposes it needs, and each data type's retention. Every answer is
 * what `decide` — the function every request is decided by — says, asked once without a purpose and,
 * for actions whose requests state one (detokenize), once per purpose the policy names (any other
 * purpose is decided as none).
 */
export function policyReport(
  policy: PolicyDocument,
  retention: RetentionLimits,
  now: Date,
  shown: (principal: Principal) => boolean = () => true,
): PolicyReport {
  const purposes = purposesNamed(policy);
  const principals = Object.entries(policy.principals)
    .map(([id, p]): Principal => ({ id, roles: p.roles, tenants: p.tenants }))
    .filter(shown);
  return {
    policyVersion: policy.version,
    generatedAt: now.toISOString(),
    revealLevels: [...REVEAL_LEVELS],
    roles: Object.keys(policy.roles).map((role) => ({
      role,
      // A role alone, in a tenant it covers: decisions differ between tenants only in whether they are covered.
      permissions: permissionsOf(policy, { id: role, roles: [role], tenants: ['*'] }, purposes),
    })),
    principals: principals.map((principal) => ({
      principal: principal.id,
      roles: [...principal.roles],
      tenants: [...principal.tenants],
      permissions: permissionsOf(policy, principal, purposes),
    })),
    retention: DATA_TYPES.map((type) => ({
      type,
      defaultTtlSeconds: retention[type]?.defaultTtlSeconds ?? null,
      maxTtlSeconds: retention[type]?.maxTtlSeconds ?? null,
    })),
  };
}

function permissionsOf(policy: PolicyDocument, principal: Principal, purposes: readonly string[]): PolicyPermission[] {
  return ACTIONS.flatMap((action) =>
    (VALUE_ACTIONS.has(action) ? DATA_TYPES : [undefined]).flatMap((type) => permissionsFor(policy, principal, action, type, purposes)),
  );
}

/** One row for what any purpose (or none) gets, then one per reveal level some named purposes raise it to. */
function permissionsFor(
  policy: PolicyDocument,
  principal: Principal,
  action: Action,
  type: DataType | undefined,
  purposes: readonly string[],
): PolicyPermission[] {
  const ask = (purpose?: string) => decide(policy, principal, action, { tenant: principal.tenants[0]!, type, purpose });
  const row = (reveal: Reveal, onlyFor: string[] | null): PolicyPermission => ({
    action,
    type: type ?? null,
    reveal: REVEALING_ACTIONS.has(action) ? reveal : null,
    purposes: onlyFor,
  });
  const anyPurpose = ask();
  const floor = anyPurpose.allow ? revealRank(anyPurpose.reveal) : -1;
  const raisedBy = new Map<Reveal, string[]>();
  // A request of any other action states no purpose: a grant bound to purposes never gives it.
  for (const purpose of PURPOSE_ACTIONS.has(action) ? purposes : []) {
    const decision = ask(purpose);
    if (decision.allow && revealRank(decision.reveal) > floor)
      raisedBy.set(decision.reveal, [...(raisedBy.get(decision.reveal) ?? []), purpose]);
  }
  return [
    ...(anyPurpose.allow ? [row(anyPurpose.reveal, null)] : []),
    ...REVEAL_LEVELS.filter((reveal) => raisedBy.has(reveal)).map((reveal) => row(reveal, raisedBy.get(reveal)!)),
  ];
}
