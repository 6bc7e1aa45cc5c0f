import type Database from 'better-sqlite3';
import type { TransactionOps } from '../transaction-plan';
import type { AuditRow, StoredRecord, SubjectRow } from '../vault-store';
import { AuditDbRow, RECORDS_WITH_SUBJECT, StoredTokenRow, SubjectDbRow, toAuditRow, toStoredRecord, toSubjectRow } from '../rows';

type SubjectOps = Pick<TransactionOps, 'claimSubject' | 'lockSubject' | 'setSubjectPurposes' | 'deleteRecordsOfSubject' | 'deleteSubject'>;

/** The data subjects aggregate: subject rows, their records, and the audit rows indexed by handle. */
export function subjectStatements(db: Database.Database) {
  const s = {
    claim: db.prepare(
      `INSERT INTO subjects (tenant, subject_hash, handle, purposes, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)
       ON CONFLICT (tenant, subject_hash) DO UPDATE SET handle = subjects.handle RETURNING handle, purposes`,
    ),
    get: db.prepare('SELECT handle, purposes FROM subjects WHERE tenant = ? AND subject_hash = ?'),
    setPurposes: db.prepare('UPDATE subjects SET purposes = ?, updated_at = ? WHERE tenant = ? AND subject_hash = ?'),
    deleteRecords: db.prepare('DELETE FROM tokens WHERE tenant = ? AND subject_hash = ? RETURNING key_version'),
    deleteSubject: db.prepare('DELETE FROM subjects WHERE tenant = ? AND subject_hash = ?'),
    deleteIndex: db.prepare('DELETE FROM audit_subjects WHERE handle = ?'),
    recordsPage: db.prepare(`${RECORDS_WITH_SUBJECT} WHERE t.tenant = ? AND t.subject_hash = ? AND t.token > ? ORDER BY t.token LIMIT ?`),
    auditOfHandle: db.prepare(
      'SELECT a.* FROM audit_subjects x JOIN audit a ON a.seq = x.seq WHERE x.handle = ? AND x.seq > ? ORDER BY x.seq LIMIT ?',
    ),
  };

  const subject = (tenant: string, subjectHash: Buffer): SubjectRow | undefined => {
    const row = s.get.get(tenant, subjectHash) as SubjectDbRow | undefined;
    return row && toSubjectRow(row);
  };

  const ops: SubjectOps = {
    claimSubject: (tenant, subjectHash, handle, now) => toSubjectRow(s.claim.get(tenant, subjectHash, handle, now, now) as SubjectDbRow),
    // The transaction holds the database's write lock: the row cannot change before commit.
    lockSubject: subject,
    setSubjectPurposes: (tenant, subjectHash, purposes, now) => void s.setPurposes.run(JSON.stringify(purposes), now, tenant, subjectHash),
    deleteRecordsOfSubject: (tenant, subjectHash) =>
      (s.deleteRecords.all(tenant, subjectHash) as { key_version: number }[]).map((r) => ({ keyVersion: r.key_version })),
    deleteSubject(tenant, subjectHash, handle) {
      s.deleteSubject.run(tenant, subjectHash);
      s.deleteIndex.run(handle);
    },
  };

  return {
    ops,
    subject,
    recordsPage: (tenant: string, subjectHash: Buffer, afterToken: string, limit: number): StoredRecord[] =>
      (s.recordsPage.all(tenant, subjectHash, afterToken, limit) as StoredTokenRow[]).map(toStoredRecord),
    auditRowsOf: (handle: Buffer, afterSeq: number, limit: number): AuditRow[] =>
      (s.auditOfHandle.all(handle, afterSeq, limit) as AuditDbRow[]).map(toAuditRow),
  };
}
