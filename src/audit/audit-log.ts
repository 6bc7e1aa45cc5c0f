import { createHmac, timingSafeEqual } from 'node:crypto';
import { encodeFields } from '../crypto/aead';
import { KeyManager, SYSTEM_TENANT } from '../crypto/key-manager';
import { AuditEntry, AuditRow, AuditSealer, AuditUnavailableError, GENESIS_HASH, VaultStore } from '../store/vault-store';

export type VerifyResult =
  { ok: true; rows: number; headSeq: number; headHash: string } | { ok: false; rows: number; firstBadSeq: number; reason: string };

export { AuditUnavailableError };

/**
 * Hash-chained audit log: each row's HMAC covers its fields, its sequence number and the previous
 * row's HMAC, under the vault's audit key. Editing, deleting or reordering a row breaks the chain.
 */
export class AuditLog {
  private cachedSealer: { sealer: AuditSealer; until: number } | undefined;

  constructor(
    private readonly store: VaultStore,
    private readonly keys: KeyManager,
  ) {}

  /**
   * The sealer of the active audit key, reused for a second: every request appends a row, and
   * looking the key up each time is measurable. Rows name their key version, so a row sealed just
   * after a rotation under the previous version still verifies.
   */
  async sealer(): Promise<AuditSealer> {
    const now = Date.now();
    if (this.cachedSealer && this.cachedSealer.until > now) return this.cachedSealer.sealer;
    const { version, key } = await this.keys.activeKey(SYSTEM_TENANT, 'audit');
    const sealer: AuditSealer = { keyVersion: version, seal: (prevHash, seq, entry) => auditMac(key, prevHash, seq, entry, version) };
    this.cachedSealer = { sealer, until: now + 1_000 };
    return sealer;
  }

  /** Appends one row; throws AuditUnavailableError when it cannot be made durable. */
  async append(entry: AuditEntry): Promise<AuditRow> {
    try {
      return await this.store.appendAudit({ entry, sealer: await this.sealer() });
    } catch (err) {
      throw err instanceof AuditUnavailableError ? err : new AuditUnavailableError(err);
    }
  }

  async verify(pageSize = 1000): Promise<VerifyResult> {
    let expectedSeq = 1;
    let prevHash: Buffer = GENESIS_HASH;
    let rows = 0;
    for (;;) {
      const page = await this.store.auditRows(expectedSeq - 1, pageSize);
      if (page.length === 0) break;
      for (const row of page) {
        const bad = await this.checkRow(row, expectedSeq, prevHash);
        if (bad) return { ok: false, rows, firstBadSeq: bad.seq, reason: bad.reason };
        rows++;
        expectedSeq = row.seq + 1;
        prevHash = row.hash;
      }
    }
    return { ok: true, rows, headSeq: expectedSeq - 1, headHash: prevHash.toString('hex') };
  }

  private async checkRow(row: AuditRow, expectedSeq: number, prevHash: Buffer): Promise<{ seq: number; reason: string } | undefined> {
    if (row.seq !== expectedSeq) return { seq: expectedSeq, reason: `row ${expectedSeq} is missing` };
    if (!safeEqual(row.prevHash, prevHash)) return { seq: row.seq, reason: 'does not link to the previous row' };
    const key = await this.keys.keyVersion(SYSTEM_TENANT, 'audit', row.keyVersion);
    if (!key) return { seq: row.seq, reason: `audit key version ${row.keyVersion} is unknown` };
    if (!safeEqual(auditMac(key, row.prevHash, row.seq, row, row.keyVersion), row.hash)) {
      return { seq: row.seq, reason: 'content does not match its HMAC (edited)' };
    }
    return undefined;
  }
}

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

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
