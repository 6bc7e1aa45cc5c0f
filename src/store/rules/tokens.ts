import { ConcurrentWriteError, Plan, ask } from '../transaction-plan';
import {
  InsertHooks,
  MAX_TOKEN_ATTEMPTS,
  PendingAudit,
  ReencryptedRecord,
  SubjectConsent,
  TokenCollisionError,
  TokenRecord,
} from '../vault-store';
import { appendAuditPlan } from './audit';
import { requireActiveDataKeys, sealsOf } from './data-keys';
import { claimSubjectsPlan } from './subjects';

/** Per data key version of a batch: the seals made under it and the records it gained. */
class KeyTally {
  private readonly byVersion = new Map<number, { seals: number; records: number }>();

  add(version: number, seals: number, records: number): void {
    const tally = this.byVersion.get(version) ?? { seals: 0, records: 0 };
    tally.seals += seals;
    tally.records += records;
    this.byVersion.set(version, tally);
  }

  *write(tenant: string): Plan<void> {
    for (const [version, { seals, records }] of this.byVersion) {
      if (seals) yield* ask('addEncryptions', tenant, version, seals);
      if (records) yield* ask('addRecordCount', tenant, version, records);
    }
  }
}

/**
 * Stores a batch of one tenant's records with its audit row (see VaultStore.insertTokens). Every
 * key version the batch is sealed under must still be active (share-locked to commit). A
 * deterministic record is first shown the stored records of its identity, and the hook decides:
 * reuse one, replace (delete) expired ones, or insert. A token already taken in the tenant gets a
 * fresh one from `retokenize`, up to MAX_TOKEN_ATTEMPTS. Every seal counts towards its key's
 * encryption limit, retries and subject ids included; the record counts follow what was written.
 * Returns the tokens in order, and the expired records it deleted (whose bytes a store that keeps
 * a log of old pages must purge, as after deleteToken). The batch's subjects are claimed first
 * (their rows created with new handles, their consent extended), before any record is written;
 * the audit row names them by handle.
 */
export function* insertTokensPlan(
  records: TokenRecord[],
  audit: PendingAudit,
  hooks: InsertHooks,
  consents: readonly SubjectConsent[] = [],
): Plan<{ tokens: string[]; replaced: string[] }> {
  const tenant = records[0]?.tenant;
  yield* requireActiveDataKeys(records.map((r) => ({ tenant: r.tenant, version: r.keyVersion })));
  audit.entry.subjects = yield* claimSubjectsPlan(records, consents, Date.parse(audit.entry.ts));
  const tally = new KeyTally();
  const replaced: string[] = [];
  const tokens: string[] = [];
  for (const [index, record] of records.entries()) {
    tokens.push(yield* insertOnePlan(record, index, hooks, tally, replaced));
  }
  if (tenant !== undefined) yield* tally.write(tenant);
  audit.entry.tokens = tokens;
  // Set on every run: a store may run the plan again after undoing a run that replaced others.
  audit.entry.reason = replaced.length ? `replaced expired deterministic tokens: ${replaced.join(', ')}` : null;
  yield* appendAuditPlan(audit);
  return { tokens, replaced };
}

function* insertOnePlan(first: TokenRecord, index: number, hooks: InsertHooks, tally: KeyTally, replaced: string[]): Plan<string> {
  let record = first;
  if (record.fingerprint) {
    const existing = yield* ask('recordsByFingerprint', record.tenant, record.type, record.fingerprint);
    if (existing.length > 0) {
      const decision = hooks.resolveExisting(index, existing);
      if (typeof decision === 'object' && 'reuse' in decision) return decision.reuse;
      if (typeof decision === 'object') {
        // A purge may have deleted one since it was read (PostgreSQL): only what this transaction deleted was replaced.
        for (const token of decision.replace) if (yield* deleteRecordPlan(record.tenant, token)) replaced.push(token);
      }
    }
  }
  for (let attempt = 1; ; attempt++) {
    const outcome = yield* ask('insertRecord', record);
    if (outcome === 'identity-taken') throw new ConcurrentWriteError('a deterministic record of this value was just written');
    tally.add(record.keyVersion, sealsOf(record), outcome === 'inserted' ? 1 : 0);
    if (outcome === 'inserted') return record.token;
    if (attempt === MAX_TOKEN_ATTEMPTS) throw new TokenCollisionError();
    record = hooks.retokenize(index);
  }
}

/** Deletes one record and takes it off its key version's count; false when there was none. */
function* deleteRecordPlan(tenant: string, token: string): Plan<boolean> {
  const deleted = yield* ask('deleteRecord', tenant, token);
  if (deleted) yield* ask('addRecordCount', tenant, deleted.keyVersion, -1);
  return deleted !== undefined;
}

/** Deletes a record of the tenant with its audit row; false (and no row) when there is none. */
export function* deleteTokenPlan(tenant: string, token: string, audit: PendingAudit): Plan<boolean> {
  if (!(yield* deleteRecordPlan(tenant, token))) return false;
  yield* appendAuditPlan(audit);
  return true;
}

/**
 * Swaps re-encrypted ciphertexts in, each only if its record is still as read (old version and
 * binding), under target versions that are still active (share-locked), and adds the batch to the
 * job's progress. Counts move from the old version to the new, and each seal is counted.
 */
export function* replaceCiphertextsPlan(updates: ReencryptedRecord[], jobId: string, failed: number, now: number): Plan<number> {
  yield* requireActiveDataKeys(updates.map((u) => ({ tenant: u.tenant, version: u.keyVersion })));
  let swapped = 0;
  for (const update of updates) {
    if (!(yield* ask('replaceCiphertext', update))) continue;
    swapped++;
    yield* ask('addEncryptions', update.tenant, update.keyVersion, sealsOf(update));
    yield* ask('addRecordCount', update.tenant, update.fromVersion, -1);
    yield* ask('addRecordCount', update.tenant, update.keyVersion, 1);
  }
  yield* ask('addJobProgress', jobId, swapped, failed, now);
  return swapped;
}
