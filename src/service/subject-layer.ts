import type { DataType } from '../domain/types';
import { KeyUnavailableError } from '../crypto/key-provider';
import type { SubjectKeys } from '../keys/subject-keys';
import type { TokenRecord } from '../store/vault-store';
import { Caller, SubjectKeyControl, VaultDeps, auditEntry } from './context';
import { SUBJECT_KEYED_BINDING, openInnerSubject, openInnerValue, subjectHash } from './record-crypto';

interface SubjectKeyRule {
  tenant: string;
  types: ReadonlyArray<DataType | '*'>;
}

export function subjectKeyControl(rules: readonly SubjectKeyRule[], keys: SubjectKeys | undefined): SubjectKeyControl {
  return {
    keys,
    appliesTo: (tenant, type) =>
      keys !== undefined &&
      rules.some((r) => (r.tenant === '*' || r.tenant === tenant) && (r.types.includes('*') || r.types.includes(type))),
  };
}

/** The value of a record whose subject key was destroyed: crypto-shredded, reported as `erased`. */
export const ERASED = 'erased';

/**
 * The subject keys a tokenize batch needs, one per distinct subject among the items the
 * configuration covers (created on first use); returns the key, if any, of an item's type and subject HMAC.
 */
export async function batchSubjectKeys(
  deps: VaultDeps,
  tenant: string,
  items: ReadonlyArray<{ type: DataType; subject?: string }>,
  fingerprintKey: Buffer | undefined,
): Promise<(type: DataType, subjectHash: Buffer | null) => Buffer | undefined> {
  const hashes = new Map<string, Buffer>();
  for (const { type, subject } of items) {
    if (subject === undefined || !deps.subjectKeys.appliesTo(tenant, type)) continue;
    const hash = subjectHash(fingerprintKey!, subject);
    hashes.set(hash.toString('hex'), hash);
  }
  // Asked for together: the keys not yet stored are created in one commit.
  const found = await Promise.all([...hashes.values()].map((hash) => subjectKeyStore(deps).getOrCreate(tenant, hash)));
  const keys = new Map([...hashes.keys()].map((hex, i) => [hex, found[i]]));
  return (type, hash) => (hash && deps.subjectKeys.appliesTo(tenant, type) ? keys.get(hash.toString('hex')) : undefined);
}

/** The inner layer of a subject-keyed record's value opened, or ERASED when its subject key is gone. */
export async function openSubjectKeyedValue(deps: VaultDeps, record: TokenRecord, inner: Buffer): Promise<Buffer | typeof ERASED> {
  const key = await subjectKeyOf(deps, record);
  return key ? openInnerValue(key, record, inner) : ERASED;
}

/**
 * Reads the subject keys of the subject-keyed records among these into memory in one call to the
 * key store (see SubjectKeys.prefetch), before they are opened one by one.
 */
export async function prefetchSubjectKeys(deps: VaultDeps, records: readonly TokenRecord[]): Promise<void> {
  const subjects = records
    .filter((r) => r.binding === SUBJECT_KEYED_BINDING)
    .map((r) => ({ tenant: r.tenant, subjectHash: r.subjectHash! }));
  if (subjects.length > 0) await subjectKeyStore(deps).prefetch(subjects);
}

/** The inner layer of a subject-keyed record's subject id opened, or null when its subject key is gone. */
export async function openSubjectKeyedSubject(deps: VaultDeps, record: TokenRecord, inner: Buffer): Promise<Buffer | null> {
  const key = await subjectKeyOf(deps, record);
  return key ? openInnerSubject(key, record, inner) : null;
}

/**
 * Crypto-shreds a data subject of a tenant (by its HMAC): destroys its key, so that none of its
 * subject-keyed values (and sealed subject ids) can be decrypted any more — from the vault database
 * or from any copy of it. Irreversible; false when the subject has no key. The destruction is
 * audited before it is done (fail closed: no audit row, no destruction). Erasure calls this first,
 * then deletes the records: a failure in between leaves records that answer `erased`, never a value.
 */
export async function destroySubjectKey(deps: VaultDeps, caller: Caller, tenant: string, hash: Buffer): Promise<boolean> {
  const keys = deps.subjectKeys.keys;
  if (!keys || !(await keys.has(tenant, hash))) return false;
  await deps.audit.append(
    auditEntry(deps, caller, { action: 'subject:erase', outcome: 'allow', tenant, reason: 'subject key destroyed (crypto-shredding)' }),
  );
  return keys.destroy(tenant, hash);
}

async function subjectKeyOf(deps: VaultDeps, record: TokenRecord): Promise<Buffer | undefined> {
  // The outer layer's AAD covers the subject HMAC and the binding: a subject-keyed record always has one.
  return subjectKeyStore(deps).get(record.tenant, record.subjectHash!);
}

function subjectKeyStore(deps: VaultDeps): SubjectKeys {
  if (!deps.subjectKeys.keys) {
    throw new KeyUnavailableError(
      'records sealed with per-subject keys need the subject key store: configure subjectKeys.path or subjectKeys.databaseUrl',
    );
  }
  return deps.subjectKeys.keys;
}
