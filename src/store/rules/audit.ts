import { Plan, ask } from '../transaction-plan';
import { AuditHead, AuditRow, AuditSegment, AuditUnavailableError, GENESIS_HASH, PendingAudit } from '../vault-store';

/** The row that continues the chain from `head` (none: the genesis): the next seq, chained from its hash. */
function linkAuditRow(head: AuditHead | undefined, { entry, sealer }: PendingAudit): AuditRow {
  const seq = (head?.seq ?? 0) + 1;
  const prevHash = head?.hash ?? GENESIS_HASH;
  return { ...entry, seq, keyVersion: sealer.keyVersion, prevHash, hash: sealer.seal(prevHash, seq, entry, sealer.keyVersion) };
}

/**
 * Appends an audit row at the head of the chain. The head is read under the chain lock, so two
 * writers can never both chain from the same row (no duplicate seq, no fork, no gap); an emptied
 * log (every row archived) continues from the last archived segment. Any failure to write the row
 * is an AuditUnavailableError, and the enclosing transaction writes nothing: no change without its
 * audit row.
 */
export function* appendAuditPlan(audit: PendingAudit): Plan<AuditRow> {
  const head = (yield* ask('lockAuditHead')) ?? (yield* ask('lastAuditSegment'));
  const row = linkAuditRow(head, audit);
  try {
    yield* ask('insertAuditRow', row);
  } catch (err) {
    throw new AuditUnavailableError(err);
  }
  return row;
}

/**
 * Prunes an archived segment with its record and audit row, only if the segment is still exactly
 * what was archived: it follows the last recorded segment (or starts at row 1), every row
 * fromSeq..throughSeq is stored, the first chains from `prevHash` and the last has `headHash`.
 * The chain lock is taken first, so no append or other prune can move the chain in between.
 */
export function* pruneAuditSegmentPlan(segment: AuditSegment, audit: PendingAudit): Plan<boolean> {
  yield* ask('lockAuditHead');
  const last = yield* ask('lastAuditSegment');
  if (segment.fromSeq !== (last?.seq ?? 0) + 1) return false;
  if ((yield* ask('countAuditRows', segment.fromSeq, segment.throughSeq)) !== segment.throughSeq - segment.fromSeq + 1) return false;
  const first = yield* ask('auditLink', segment.fromSeq);
  const end = yield* ask('auditLink', segment.throughSeq);
  if (!first?.prevHash.equals(segment.prevHash) || !end?.hash.equals(segment.headHash)) return false;
  yield* ask('deleteAuditRows', segment.fromSeq, segment.throughSeq);
  yield* ask('insertAuditSegment', segment);
  yield* appendAuditPlan(audit);
  return true;
}
