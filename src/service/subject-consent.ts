import type { StoredRecord } from '../store/vault-store';

/**
 * Purpose limitation: a record of a subject whose consent is recorded may be revealed only for a
 * stated purpose the subject consented to. No recorded consent (null) restricts nothing.
 */
export function consentRefuses(record: StoredRecord, purpose: string | undefined): boolean {
  const consented = record.subjectRow?.purposes;
  if (consented === null || consented === undefined) return false;
  return purpose === undefined || !consented.includes(purpose);
}

/** The handles (hex) of the subjects of these records, for an audit row; each once. */
export function subjectHandles(records: ReadonlyArray<StoredRecord | string>): string[] {
  const handles = new Set<string>();
  for (const record of records) {
    if (typeof record === 'object' && record.subjectRow) handles.add(record.subjectRow.handle.toString('hex'));
  }
  return [...handles];
}
