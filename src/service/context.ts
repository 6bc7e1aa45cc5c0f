import type { AuditLog } from '../audit/audit-log';
import type { DataType } from '../domain/types';
import type { KeyManager } from '../keys/key-manager';
import type { SubjectKeys } from '../keys/subject-keys';
import type { Logger } from '../logger';
import type { RoutingKeyProvider } from '../crypto/routing-key-provider';
import type { PolicyDocument, Principal } from '../policy/policy';
import type { AuditEntry, VaultStore } from '../store/vault-store';

/** A KEK to switch to; an aws-kms target without keyId means the configured `keyProvider.kms.keyId`. */
export type KekTarget = { type: 'local' } | { type: 'aws-kms'; keyId?: string };

/** Control over the key-encryption keys, for rewrap and KEK migration (local master key → KMS). */
export interface KekControl {
  readonly provider: RoutingKeyProvider;
  /** Re-reads the local master keyring file, which may hold a new active version. */
  reloadLocal(): void;
  /** Makes the target wrap all new data keys, and records the choice in config.json. */
  switchPrimary(target: KekTarget): Promise<void>;
}

/**
 * Whether records of binding 1 (sealed before every security-relevant column was bound, see
 * record-crypto.ts) may still be opened. Once none remain, accepting them would only let a database
 * writer put back an old ciphertext with edited columns; the answer is kept in config.json, out of
 * that writer's reach.
 */
export interface RecordBindingControl {
  acceptsLegacy(): boolean;
  /** From now on refuses binding-1 records, here and after a restart. */
  refuseLegacy(): void;
}

/** Which records are sealed under a per-subject key (crypto-shredding, see subject-layer.ts), and those keys. */
export interface SubjectKeyControl {
  /** Whether a record of this tenant and type that names a subject gets a per-subject key. */
  appliesTo(tenant: string, type: DataType): boolean;
  /** Undefined when no subject key store is configured (then appliesTo is false everywhere). */
  keys?: SubjectKeys;
}

/**
 * Per data type, how long its tokens live by default and at most (the config's `retention` block);
 * a type not listed is not limited.
 */
export type RetentionLimits = Partial<Record<DataType, { defaultTtlSeconds?: number; maxTtlSeconds?: number }>>;

interface RotationPolicy {
  maxAgeMs: number;
  maxEncryptions: number;
}

/** What every use case needs; built once at start-up. */
export interface VaultDeps {
  store: VaultStore;
  keys: KeyManager;
  audit: AuditLog;
  keks: KekControl;
  recordBinding: RecordBindingControl;
  subjectKeys: SubjectKeyControl;
  rotation: RotationPolicy;
  reencrypt: { batchSize: number; pauseMs: number; leaseMs: number };
  retention: RetentionLimits;
  /** The background purge of expired records: every intervalMs (0: never), batchSize records per transaction. */
  purge: { intervalMs: number; batchSize: number };
  /** The current policy (it can be reloaded while serving). */
  policy: () => PolicyDocument;
  /** For failures no caller is told about (background jobs, audit summaries): names and codes, never values. */
  logger: Logger;
  /** Region for national phone numbers; unset means international format only. */
  phoneRegion?: string;
  now: () => number;
}

/** Who is asking, and under which request id their audit rows are filed. */
export interface Caller {
  principal: Principal;
  requestId: string;
}

/** The principal name under which the vault files what it does by itself (automatic rotation, jobs). */
export const SYSTEM_CALLER: Caller = { principal: { id: 'system', roles: [], tenants: ['*'] }, requestId: 'system' };

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
