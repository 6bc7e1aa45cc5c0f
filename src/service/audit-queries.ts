import type { AuditListResponse, AuditVerifyResponse } from '../contract/schemas';
import { VaultError } from '../errors';
import { mayWithoutPurpose } from '../policy/policy';
import { Caller, VaultDeps, auditEntry } from './context';

export const DEFAULT_AUDIT_PAGE = 100;
export const MAX_AUDIT_PAGE = 1000;

async function requireAuditRead(deps: VaultDeps, caller: Caller, action: string): Promise<void> {
  const allowed = mayWithoutPurpose(deps.policy(), caller.principal, 'audit:read');
  await deps.audit.append(auditEntry(deps, caller, { action, outcome: allowed ? 'allow' : 'deny', reason: allowed ? null : 'no grant' }));
  if (!allowed) throw new VaultError('forbidden', 'This caller may not read the audit log.');
}

export async function listAudit(deps: VaultDeps, caller: Caller, after: number, limit: number): Promise<AuditListResponse> {
  await requireAuditRead(deps, caller, 'audit:read');
  // A principal scoped to some tenants sees only their rows; `*` sees every row, the vault's own too.
  const tenants = caller.principal.tenants.includes('*') ? undefined : caller.principal.tenants;
  const rows = await deps.store.auditRows(after, limit, tenants);
  return {
    items: rows.map(({ prevHash: _prev, hash, ...row }) => ({ ...row, hash: hash.toString('hex') })),
    next: rows.length === limit ? rows[rows.length - 1].seq : null,
  };
}

/**
 * Verifies the chain from the last checkpoint. The chain is one for all tenants, so a caller
 * scoped to some tenants learns only whether it is intact: counts, sequence numbers, hashes and
 * reasons would tell it about other tenants' rows.
 */
export async function verifyAudit(deps: VaultDeps, caller: Caller): Promise<AuditVerifyResponse> {
  await requireAuditRead(deps, caller, 'audit:verify');
  const result = await deps.audit.verify();
  return caller.principal.tenants.includes('*') ? result : { ok: result.ok, scope: 'tenants' };
}
