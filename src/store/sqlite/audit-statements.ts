import type Database from 'better-sqlite3';
import type { TransactionOps } from '../transaction-plan';
import type { AuditCheckpoint, AuditHead, AuditRow, AuditSegment } from '../vault-store';
import { AuditDbRow, toAuditRow } from '../rows';
import { toAuditParams } from './rows';
import { subjectHandlesOf } from '../rules/subjects';

/** A tenant's audit rows after a sequence number, in order (served by the audit_tenant_seq index). */
export const AUDIT_AFTER_OF_TENANT_SQL = 'SELECT * FROM audit WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?';

type AuditOps = Pick<
  TransactionOps,
  'lockAuditHead' | 'lastAuditSegment' | 'insertAuditRow' | 'countAuditRows' | 'auditLink' | 'deleteAuditRows' | 'insertAuditSegment'
>;

/** The audit aggregate: the chain, its checkpoint and its archived segments. */
export function auditStatements(db: Database.Database) {
  const s = {
    head: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
    insert: db.prepare(
      `INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
       VALUES (@seq, @ts, @requestId, @principal, @tenant, @action, @types, @tokens, @purpose, @outcome, @reason, @subjects, @keyVersion, @prevHash, @hash)`,
    ),
    after: db.prepare('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?'),
    afterOfTenant: db.prepare(AUDIT_AFTER_OF_TENANT_SQL),
    checkpoint: db.prepare('SELECT seq, hash, key_version AS keyVersion, created_at AS createdAt, mac FROM audit_checkpoint WHERE id = 1'),
    saveCheckpoint: db.prepare(
      `INSERT INTO audit_checkpoint (id, seq, hash, key_version, created_at, mac) VALUES (1, @seq, @hash, @keyVersion, @createdAt, @mac)
       ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, key_version = excluded.key_version,
         created_at = excluded.created_at, mac = excluded.mac`,
    ),
    segments: db.prepare(
      `SELECT from_seq AS fromSeq, through_seq AS throughSeq, prev_hash AS prevHash, head_hash AS headHash,
         archived_at AS archivedAt, key_version AS keyVersion, mac FROM audit_segments ORDER BY through_seq`,
    ),
    lastSegment: db.prepare('SELECT through_seq AS seq, head_hash AS hash FROM audit_segments ORDER BY through_seq DESC LIMIT 1'),
    insertSegment: db.prepare(
      `INSERT INTO audit_segments (through_seq, from_seq, prev_hash, head_hash, archived_at, key_version, mac)
       VALUES (@throughSeq, @fromSeq, @prevHash, @headHash, @archivedAt, @keyVersion, @mac)`,
    ),
    rowCount: db.prepare('SELECT count(*) AS n FROM audit WHERE seq BETWEEN ? AND ?'),
    link: db.prepare('SELECT prev_hash AS prevHash, hash FROM audit WHERE seq = ?'),
    indexSubject: db.prepare('INSERT INTO audit_subjects (handle, seq) VALUES (?, ?)'),
    deleteRows: db.prepare('DELETE FROM audit WHERE seq BETWEEN ? AND ?'),
  };

  const head = () => s.head.get() as AuditHead | undefined;

  const ops: AuditOps = {
    // The transaction's write lock serialises appends: the head read here cannot move before commit.
    lockAuditHead: head,
    lastAuditSegment: () => s.lastSegment.get() as AuditHead | undefined,
    insertAuditRow(row: AuditRow) {
      s.insert.run(toAuditParams(row));
      for (const handle of subjectHandlesOf(row.subjects)) s.indexSubject.run(handle, row.seq);
    },
    countAuditRows: (fromSeq, throughSeq) => (s.rowCount.get(fromSeq, throughSeq) as { n: number }).n,
    auditLink: (seq) => s.link.get(seq) as { prevHash: Buffer; hash: Buffer } | undefined,
    deleteAuditRows: (fromSeq, throughSeq) => void s.deleteRows.run(fromSeq, throughSeq),
    insertAuditSegment: (segment) => void s.insertSegment.run(segment),
  };

  return {
    ops,
    head,
    rowsAfter: (afterSeq: number, limit: number) => (s.after.all(afterSeq, limit) as AuditDbRow[]).map(toAuditRow),
    rowsOfTenantAfter: (tenant: string, afterSeq: number, limit: number) => s.afterOfTenant.all(tenant, afterSeq, limit) as AuditDbRow[],
    checkpoint: () => s.checkpoint.get() as AuditCheckpoint | undefined,
    saveCheckpoint: (checkpoint: AuditCheckpoint) => void s.saveCheckpoint.run(checkpoint),
    segments: () => s.segments.all() as AuditSegment[],
  };
}
