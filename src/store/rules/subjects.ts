import { randomBytes } from 'node:crypto';
import { MAX_PURPOSES } from '../../domain/types';
import { VaultError } from '../../errors';
import { Plan, ask } from '../transaction-plan';
import type { ConsentChange, PendingAudit, SubjectConsent, SubjectRow, TokenRecord } from '../vault-store';
import { appendAuditPlan } from './audit';
import { uncountDeletedPlan } from './data-keys';

/** Bytes of a subject handle: random, so it says nothing of the subject. */
const HANDLE_BYTES = 16;

const HANDLE_HEX = new RegExp(`^[0-9a-f]{${HANDLE_BYTES * 2}}$`);

/**
 * The subject handles an audit row names, as bytes, for the audit_subjects index. Rows written
 * before subjects had handles name keyed HMACs (twice as long): those are not handles.
 */
export function subjectHandlesOf(subjects: readonly string[]): Buffer[] {
  return [...new Set(subjects)].filter((s) => HANDLE_HEX.test(s)).map((s) => Buffer.from(s, 'hex'));
}

/**
 * The consented set after a change; purposes keep their first-recorded order. A set above
 * MAX_PURPOSES is refused (each detokenize of the subject's records reads it): the transaction
 * writes nothing.
 */
function changedPurposes(current: readonly string[] | null, change: ConsentChange): string[] {
  const withdrawn = new Set(change.withdraw);
  const purposes = [...new Set([...(current ?? []), ...change.grant])].filter((p) => !withdrawn.has(p));
  if (purposes.length > MAX_PURPOSES) {
    throw new VaultError('too_many_purposes', `A subject may have consented to at most ${MAX_PURPOSES} purposes; withdraw some first.`);
  }
  return purposes;
}

/**
 * Claims the subject row of every subject of a batch (creating it with a fresh handle), adds the
 * batch's consented purposes, and returns the handles (hex) for the audit row. Called before any
 * record is written, so an erasure of the subject either saw the records or is seen by them.
 */
export function* claimSubjectsPlan(records: readonly TokenRecord[], consents: readonly SubjectConsent[], now: number): Plan<string[]> {
  const bySubject = new Map<string, { tenant: string; subjectHash: Buffer; purposes: string[] }>();
  for (const { tenant, subjectHash } of records) {
    if (subjectHash && !bySubject.has(subjectHash.toString('hex'))) {
      bySubject.set(subjectHash.toString('hex'), { tenant, subjectHash, purposes: [] });
    }
  }
  for (const consent of consents) bySubject.get(consent.subjectHash.toString('hex'))?.purposes.push(...consent.purposes);
  const handles: string[] = [];
  // In one order (by HMAC), so two batches claiming the same subjects queue instead of deadlocking.
  for (const [, { tenant, subjectHash, purposes }] of [...bySubject].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const row = yield* ask('claimSubject', tenant, subjectHash, randomBytes(HANDLE_BYTES), now);
    if (purposes.length > 0) {
      const next = changedPurposes(row.purposes, { grant: purposes, withdraw: [] });
      if (row.purposes === null || next.length !== row.purposes.length) yield* ask('setSubjectPurposes', tenant, subjectHash, next, now);
    }
    handles.push(row.handle.toString('hex'));
  }
  return handles;
}

/** Changes a subject's consent with its audit row naming the subject's handle (see VaultStore.changeConsent). */
export function* changeConsentPlan(
  tenant: string,
  subjectHash: Buffer,
  change: ConsentChange,
  now: number,
  audit: PendingAudit,
): Plan<SubjectRow> {
  const row = yield* ask('claimSubject', tenant, subjectHash, randomBytes(HANDLE_BYTES), now);
  const purposes = changedPurposes(row.purposes, change);
  yield* ask('setSubjectPurposes', tenant, subjectHash, purposes, now);
  audit.entry.subjects = [row.handle.toString('hex')];
  yield* appendAuditPlan(audit);
  return { handle: row.handle, purposes };
}

/** Erases a subject: its records, its row and its audit index entries, with the audit row (see VaultStore.eraseSubject). */
export function* eraseSubjectPlan(tenant: string, subjectHash: Buffer, audit: PendingAudit): Plan<{ records: number }> {
  const row = yield* ask('lockSubject', tenant, subjectHash);
  const deleted = yield* ask('deleteRecordsOfSubject', tenant, subjectHash);
  yield* uncountDeletedPlan(deleted.map(({ keyVersion }) => ({ tenant, keyVersion })));
  if (row) yield* ask('deleteSubject', tenant, subjectHash, row.handle);
  audit.entry.subjects = [];
  audit.entry.reason = `erased ${deleted.length} records${row ? ' and the subject row' : ''}`;
  yield* appendAuditPlan(audit);
  return { records: deleted.length };
}
