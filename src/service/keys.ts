import { context, DataKey } from '../keys/key-manager';
import type { DataKeyRecord, DataKeyState, KeyPurpose } from '../domain/keys';
import type { KeyListResponse, KeyView } from '../contract/schemas';
import { VaultError } from '../errors';
import { Action, decide, principalCoversTenant } from '../policy/policy';
import { AuditEntry, KeyInUseError } from '../store/vault-store';
import { Caller, KekTarget, SYSTEM_CALLER, VaultDeps, auditEntry } from './context';
import { DEFAULT_TENANT } from '../domain/tenants';
import { errorForLog } from './log-error';

export interface TenantScope {
  tenant?: string;
  all?: boolean;
}

/** Every key version of the tenants the caller may see. */
export async function listKeys(deps: VaultDeps, caller: Caller, scope: TenantScope): Promise<KeyListResponse> {
  const tenants = await authoriseTenants(deps, caller, 'keys:read', scope, true);
  await deps.audit.append(
    auditEntry(deps, caller, {
      action: 'keys:read',
      outcome: 'allow',
      tenant: tenants.length === 1 ? tenants[0] : null,
      reason: 'list keys',
    }),
  );
  const counts = await deps.store.recordCountsByKey();
  const keys = (await deps.store.listDataKeys()).filter((k) => tenants.includes(k.tenant));
  return { keys: keys.map((k) => toView(k, counts)) };
}

/** A new active data-key version per tenant; the old versions stay decrypt-only. */
export async function rotateKeys(deps: VaultDeps, caller: Caller, scope: TenantScope) {
  const tenants = await authoriseTenants(deps, caller, 'keys:rotate', scope);
  const rotated = [];
  for (const tenant of tenants) {
    const result = await rotateDataKey(deps, caller, tenant, 'requested');
    rotated.push({ tenant, purpose: 'data' as const, version: result.version, previousVersion: result.previous ?? null });
  }
  return { rotated };
}

async function rotateDataKey(deps: VaultDeps, caller: Caller, tenant: string, why: string) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const entry = auditEntry(deps, caller, { action: 'keys:rotate', outcome: 'allow', tenant, reason: `data key rotation (${why})` });
    const result = await deps.keys.rotate(tenant, 'data', { entry, sealer: await deps.audit.sealer() });
    if (result) return result;
  }
  throw new VaultError('internal_error', 'Key rotation kept racing with another rotation.');
}

/**
 * The tenant's active data key, rotated first when it is too old or has encrypted too many values
 * for the batch about to be sealed (random 96-bit nonces are safe well under 2^32 uses per key).
 */
export async function freshDataKey(deps: VaultDeps, tenant: string, batchSize: number): Promise<DataKey> {
  const key = await deps.keys.activeKey(tenant, 'data');
  const tooOld = deps.now() - key.createdAt >= deps.rotation.maxAgeMs;
  // A batch seals each value and possibly its subject: count two seals per item.
  const tooUsed = key.encryptions + 2 * batchSize > deps.rotation.maxEncryptions;
  if (!tooOld && !tooUsed) return key;
  const why = tooOld ? 'automatic: age' : 'automatic: encryption count';
  const entry = auditEntry(deps, SYSTEM_CALLER, { action: 'keys:rotate', outcome: 'allow', tenant, reason: `data key rotation (${why})` });
  // Compare-and-set: of concurrent requests that found this version stale, one rotates; the rest use its key.
  await deps.keys.rotate(tenant, 'data', { entry, sealer: await deps.audit.sealer() }, key.version);
  return deps.keys.activeKey(tenant, 'data');
}

/**
 * Re-wraps every data key under the primary KEK (optionally switching it first, e.g. from the
 * local master key to KMS). Records are not touched. Failures are reported per key.
 */
export async function rewrapKeys(deps: VaultDeps, caller: Caller, target: KekTarget | undefined) {
  await authoriseVaultWide(deps, caller, 'keys:rotate');
  deps.keks.reloadLocal();
  if (target) {
    // The switch is audited before it happens, and a refused one gets its own deny row. The caller's
    // key id is not written down (it may be anything); the summary row below names the KEK used.
    const to = target.type === 'local' ? 'the local master key' : 'a KMS key';
    await deps.audit.append(auditEntry(deps, caller, { action: 'keys:rewrap', outcome: 'allow', reason: `switching the KEK to ${to}` }));
    try {
      await deps.keks.switchPrimary(target);
    } catch (err) {
      const why = err instanceof VaultError ? err.code : (err as Error).name;
      await deps.audit.append(auditEntry(deps, caller, { action: 'keys:rewrap', outcome: 'deny', reason: `KEK switch refused (${why})` }));
      throw err;
    }
  }
  const kekId = deps.keks.provider.primary.describe().kekId;
  let rewrapped = 0;
  let unchanged = 0;
  const failed = new Map<string, { view: { tenant: string; purpose: KeyPurpose; version: number; error: string }; cause: unknown }>();
  // A second pass picks up keys a concurrent rotation created under the old KEK meanwhile.
  for (let pass = 0; pass < 2; pass++) {
    for (const key of await deps.store.listDataKeys()) {
      if (!key.wrapped || key.state === 'destroyed') continue;
      if (key.kekId === kekId) {
        if (pass === 0) unchanged++;
        continue;
      }
      const id = `${key.tenant}/${key.purpose}/${key.version}`;
      try {
        const from = { kekId: key.kekId, wrapped: key.wrapped };
        const to = await deps.keks.provider.rewrap({ kekId: key.kekId, blob: key.wrapped }, context(key.tenant, key.purpose, key.version));
        if (await deps.store.updateWrappedKey(key, from, { kekId: to.kekId, wrapped: to.blob })) rewrapped++;
        deps.keys.forgetActive(key.tenant, key.purpose);
        failed.delete(id);
      } catch (err) {
        failed.set(id, {
          view: { tenant: key.tenant, purpose: key.purpose, version: key.version, error: (err as Error).message },
          cause: err,
        });
      }
    }
  }
  for (const { view, cause } of failed.values()) {
    deps.logger.warn(
      { tenant: view.tenant, purpose: view.purpose, version: view.version, error: errorForLog(cause) },
      'a data key could not be rewrapped',
    );
  }
  await deps.audit.append(
    auditEntry(deps, caller, {
      action: 'keys:rewrap',
      outcome: failed.size ? 'partial' : 'allow',
      reason: `to ${kekId}: ${rewrapped} rewrapped, ${unchanged} unchanged, ${failed.size} failed`,
    }),
  );
  return { kekId, rewrapped, unchanged, failed: [...failed.values()].map((f) => f.view) };
}

/** Marks a decrypt-only data key retired; refused while any record still uses it. */
export async function retireKey(deps: VaultDeps, caller: Caller, tenant: string, version: number) {
  await authoriseTenants(deps, caller, 'keys:rotate', { tenant });
  const key = await requireKey(deps, tenant, version);
  if (key.state === 'active') throw new VaultError('key_active', 'The active key cannot be retired; rotate first.');
  if (key.state !== 'decrypt-only') throw new VaultError('key_state_conflict', `Key version ${version} is already ${key.state}.`);
  const entry = auditEntry(deps, caller, { action: 'keys:retire', outcome: 'allow', tenant, reason: `data key v${version} retired` });
  await changeState(deps, { tenant, version }, 'decrypt-only', 'retired', entry);
  return { key: toView({ ...key, state: 'retired' }, new Map([[`${tenant}/${version}`, 0]])) };
}

/** Crypto-shreds a retired data key: its wrapped material is deleted and cannot come back. */
export async function destroyKey(deps: VaultDeps, caller: Caller, tenant: string, version: number, confirm: string | undefined) {
  await authoriseTenants(deps, caller, 'keys:destroy', { tenant });
  const expected = destroyConfirmation(tenant, version);
  if (confirm !== expected) {
    throw new VaultError('confirmation_required', `Destroying a key is irreversible; send "confirm": "${expected}".`, {
      confirm: expected,
    });
  }
  const key = await requireKey(deps, tenant, version);
  if (key.state !== 'retired')
    throw new VaultError('key_state_conflict', `Only a retired key can be destroyed; version ${version} is ${key.state}.`);
  const entry = auditEntry(deps, caller, {
    action: 'keys:destroy',
    outcome: 'allow',
    tenant,
    reason: `data key v${version} destroyed (crypto-shred)`,
  });
  await changeState(deps, { tenant, version }, 'retired', 'destroyed', entry);
  deps.keys.forget(tenant, 'data', version);
  return { key: toView({ ...key, state: 'destroyed' }, new Map([[`${tenant}/${version}`, 0]])) };
}

async function changeState(
  deps: VaultDeps,
  key: { tenant: string; version: number },
  from: DataKeyState,
  to: DataKeyState,
  entry: AuditEntry,
) {
  let changed: boolean;
  try {
    changed = await deps.store.changeDataKeyState({ ...key, purpose: 'data' }, from, to, { entry, sealer: await deps.audit.sealer() });
  } catch (err) {
    if (!(err instanceof KeyInUseError)) throw err;
    throw new VaultError('key_in_use', `${err.records} records still use key version ${key.version}; re-encrypt them first.`, {
      records: err.records,
    });
  }
  if (!changed) throw new VaultError('key_state_conflict', `Key version ${key.version} changed state meanwhile; try again.`);
}

function destroyConfirmation(tenant: string, version: number): string {
  return `destroy ${tenant}/data/v${version}`;
}

async function requireKey(deps: VaultDeps, tenant: string, version: number): Promise<DataKeyRecord> {
  const key = await deps.store.dataKey(tenant, 'data', version);
  if (!key) throw new VaultError('not_found', `Tenant ${tenant} has no data key version ${version}.`);
  return key;
}

/**
 * The tenants a key operation applies to: one named tenant (default `default`), or with `all`
 * every tenant that has keys and that the caller covers. Denials are audited.
 */
export async function authoriseTenants(
  deps: VaultDeps,
  caller: Caller,
  action: Action,
  scope: TenantScope,
  includeSystem = false,
): Promise<string[]> {
  const policy = deps.policy();
  let tenants: string[];
  if (scope.all) {
    const known = [...new Set((await deps.store.listDataKeys()).map((k) => k.tenant))];
    tenants = known.filter((t) => principalCoversTenant(caller.principal, t) && (includeSystem || !t.startsWith('_')));
  } else {
    tenants = [scope.tenant ?? DEFAULT_TENANT];
  }
  const denied = tenants.find((tenant) => !decide(policy, caller.principal, action, { tenant }).allow);
  if (denied !== undefined || (scope.all && !mayAct(deps, caller, action))) {
    await deps.audit.append(auditEntry(deps, caller, { action, outcome: 'deny', tenant: denied ?? null, reason: 'no grant' }));
    throw new VaultError('forbidden', `Not allowed to ${action}${denied ? ` for tenant ${denied}` : ''}.`);
  }
  return tenants;
}

/** Vault-wide key operations (rewrap) need the action on every tenant: a `*` principal. */
async function authoriseVaultWide(deps: VaultDeps, caller: Caller, action: Action): Promise<void> {
  const allowed = caller.principal.tenants.includes('*') && decide(deps.policy(), caller.principal, action, { tenant: '*' }).allow;
  if (!allowed) {
    await deps.audit.append(auditEntry(deps, caller, { action, outcome: 'deny', reason: 'needs the action on all tenants (*)' }));
    throw new VaultError('forbidden', `Not allowed to ${action} for the whole vault (needs tenants ["*"]).`);
  }
}

function mayAct(deps: VaultDeps, caller: Caller, action: Action): boolean {
  return caller.principal.tenants.some((t) => decide(deps.policy(), caller.principal, action, { tenant: t }).allow);
}

function toView(k: DataKeyRecord, counts: Map<string, number>): KeyView {
  return {
    tenant: k.tenant,
    purpose: k.purpose,
    version: k.version,
    state: k.state,
    kekId: k.kekId,
    createdAt: new Date(k.createdAt).toISOString(),
    encryptions: k.encryptions,
    records: k.purpose === 'data' ? (counts.get(`${k.tenant}/${k.version}`) ?? 0) : null,
  };
}
