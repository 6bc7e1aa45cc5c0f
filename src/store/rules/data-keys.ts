import { ConcurrentWriteError, KeyRef, Plan, ask } from '../transaction-plan';
import { DataKeyRecord, DataKeyState, KeyInUseError, PendingAudit, StaleDataKeyError } from '../vault-store';
import { appendAuditPlan } from './audit';

/**
 * A record may be written under a data key version only while it is the active one: checked with
 * the key row share-locked, so a rotation, retire or destroy of it waits for this transaction to
 * commit, and one that committed first is seen. Each distinct (tenant, version) is checked once.
 */
export function* requireActiveDataKeys(keys: Iterable<{ tenant: string; version: number }>): Plan<void> {
  const seen = new Set<string>();
  for (const { tenant, version } of keys) {
    const id = `${tenant}/${version}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const key = yield* ask('lockDataKey', { tenant, purpose: 'data', version }, 'share');
    if (key?.state !== 'active') throw new StaleDataKeyError();
  }
}

/** Takes deleted records off their key versions' record counts: one update per (tenant, version), in first-seen order. */
export function* uncountDeletedPlan(deleted: Iterable<{ tenant: string; keyVersion: number }>): Plan<void> {
  const perVersion = new Map<string, { tenant: string; version: number; records: number }>();
  for (const { tenant, keyVersion } of deleted) {
    const id = `${tenant}/${keyVersion}`;
    const count = perVersion.get(id) ?? { tenant, version: keyVersion, records: 0 };
    count.records++;
    perVersion.set(id, count);
  }
  for (const { tenant, version, records } of perVersion.values()) yield* ask('addRecordCount', tenant, version, -records);
}

/** Seals made under a data key by one record: its value, and its subject id when it has one. */
export function sealsOf(record: { subjectSealed: Buffer | null }): number {
  return record.subjectSealed ? 2 : 1;
}

/**
 * Rotation: `next` becomes active and the active version decrypt-only, with the audit row. Refused
 * (false) when `next.version` exists or the active version is not `expectedActive` (someone else
 * rotated first). Rotations and state changes of one (tenant, purpose) are serialised by the key
 * family lock, so the check and the insert cannot be split by another rotation.
 */
export function* rotateDataKeyPlan(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Plan<boolean> {
  yield* ask('lockKeyFamily', next.tenant, next.purpose);
  if (yield* ask('lockDataKey', next, 'update')) return false;
  const active = yield* ask('lockActiveDataKey', next.tenant, next.purpose);
  if (expectedActive !== undefined && active?.version !== expectedActive) return false;
  yield* ask('demoteActiveDataKey', next.tenant, next.purpose);
  // Only a writer that skipped the family lock (a first-key insert racing) can have taken it since.
  if (!(yield* ask('insertDataKey', next))) throw new ConcurrentWriteError(`data key ${next.tenant}/${next.purpose}/v${next.version}`);
  yield* appendAuditPlan(audit);
  return true;
}

/**
 * The key-in-use rule: a data key version that records still use cannot be retired or destroyed.
 * The records are counted after the key row is locked for update: inserts and re-encryption into
 * that version hold its row share-locked until they commit, so none can land after the count.
 */
export function* changeDataKeyStatePlan(key: KeyRef, from: DataKeyState, to: DataKeyState, audit: PendingAudit): Plan<boolean> {
  yield* ask('lockKeyFamily', key.tenant, key.purpose);
  const current = yield* ask('lockDataKey', key, 'update');
  if (current?.state !== from) return false;
  if (key.purpose === 'data' && to !== 'decrypt-only') {
    const records = yield* ask('countRecordsAt', key.tenant, key.version);
    if (records > 0) throw new KeyInUseError(records);
  }
  if (!(yield* ask('setDataKeyState', key, from, to))) return false;
  yield* appendAuditPlan(audit);
  return true;
}
