import { createHmac, timingSafeEqual } from 'node:crypto';
import { encodeFields } from '../crypto/aead';
import type { AuditCheckpoint, AuditEntry, AuditSegment } from '../store/vault-store';

/** A row's chained MAC: its fields, its sequence number, its key version and the previous row's MAC. */
export function auditMac(key: Buffer, prevHash: Buffer, seq: number, e: AuditEntry, keyVersion: number): Buffer {
  return createHmac('sha256', key)
    .update(prevHash)
    .update(
      encodeFields('pii-vault/audit/v1', [
        seq,
        keyVersion,
        e.ts,
        e.requestId,
        e.principal,
        JSON.stringify(e.tenant),
        e.action,
        JSON.stringify(e.types),
        JSON.stringify(e.tokens),
        JSON.stringify(e.purpose),
        e.outcome,
        JSON.stringify(e.reason),
        JSON.stringify(e.subjects),
      ]),
    )
    .digest();
}

/**
 * MACs of the state the vault keeps about its own audit chain, under the audit key. Each kind has
 * its own label, so one kind can never be passed off as another.
 */
export function checkpointMac(key: Buffer, c: Omit<AuditCheckpoint, 'mac'>): Buffer {
  return createHmac('sha256', key)
    .update(encodeFields('pii-vault/audit-checkpoint/v1', [c.seq, c.keyVersion, c.hash.toString('hex'), c.createdAt]))
    .digest();
}

export function segmentMac(key: Buffer, s: Omit<AuditSegment, 'mac'>): Buffer {
  return createHmac('sha256', key)
    .update(
      encodeFields('pii-vault/audit-segment/v1', [
        s.fromSeq,
        s.throughSeq,
        s.keyVersion,
        s.prevHash.toString('hex'),
        s.headHash.toString('hex'),
        s.archivedAt,
      ]),
    )
    .digest();
}

export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
