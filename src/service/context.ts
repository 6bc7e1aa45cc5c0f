import type { AuditLog } from '../audit/audit-log';
import type { KeyManager } from '../crypto/key-manager';
import type { PolicyDocument, Principal } from '../policy/policy';
import type { AuditEntry, VaultStore } from '../store/vault-store';

/** What every use case needs; built once at start-up. */
export interface VaultDeps {
  store: VaultStore;
  keys: KeyManager;
  audit: AuditLog;
  /** The current policy (it can be reloaded while serving). */
  policy: () => PolicyDocument;
  /** Region for national phone numbers; unset means international format only. */
  phoneRegion?: string;
  now: () => number;
}

/** Who is asking, and under which request id their audit rows are filed. */
export interface Caller {
  principal: Principal;
  requestId: string;
}

export function auditEntry(
  deps: VaultDeps,
  caller: Caller,
  fields: Pick<AuditEntry, 'action' | 'outcome'> & Partial<AuditEntry>,
): AuditEntry {
  return {
    ts: new Date(deps.now()).toISOString(),
    requestId: caller.requestId,
    principal: caller.principal.id,
    tenant: null,
    types: [],
    tokens: [],
    purpose: null,
    reason: null,
    subjects: [],
    ...fields,
  };
}
