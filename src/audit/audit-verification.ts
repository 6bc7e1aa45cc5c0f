import { KeyManager, SYSTEM_TENANT } from '../crypto/key-manager';
import { AuditRow, GENESIS_HASH, VaultStore } from '../store/vault-store';
import { auditMac, checkpointMac, safeEqual } from './audit-marks';

/**
 * What the stored checkpoint was to this verification: `none` (absent), `used` (intact, and the
 * verification started after it), `valid` (intact, not needed: a full run), `rejected` (its MAC does
 * not verify: forged or damaged; a full re-verify was done instead).
 */
export type CheckpointStatus = 'none' | 'used' | 'valid' | 'rejected';

export type VerifyResult = (
  { ok: true; rows: number; headSeq: number; headHash: string } | { ok: false; rows: number; firstBadSeq: number; reason: string }
) & {
  /** The first row this run checked (rows before it were verified by an earlier run). */
  verifiedFrom: number;
  checkpoint: CheckpointStatus;
};

export interface VerifyOptions {
  /** Check every stored row, not only those after the checkpoint. */
  full?: boolean;
  /** Rows read per store call. */
  pageSize?: number;
}

/** The longest verification keeps the event loop before letting other work (requests, probes) run. */
export const VERIFY_SLICE_MS = 10;
const DEFAULT_PAGE_SIZE = 200;

/** A row known to be good (seq 0 with the genesis hash: before the first row). */
interface Link {
  seq: number;
  hash: Buffer;
}

type Walk = { ok: true; last: Link } | { ok: false; last: Link; firstBadSeq: number; reason: string };

/**
 * Verifies the hash chain in slices, yielding to the event loop between them. Incremental runs
 * start after the MAC-protected checkpoint a previous run left (after checking that its row is
 * still there, unchanged); full runs start at the first row. A checkpoint also pins the chain's
 * length: rows up to it that disappear (a truncated log) are reported.
 */
export class ChainVerifier {
  constructor(
    private readonly store: VaultStore,
    private readonly keys: KeyManager,
    /** Records, in the audit log itself, that a stored checkpoint failed its MAC. */
    private readonly reportRejectedCheckpoint: (seq: number) => Promise<void>,
  ) {}

  async verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    const origin: Link = { seq: 0, hash: GENESIS_HASH };
    // Checkpoint before head: a checkpoint saved meanwhile can then never lie beyond the head read.
    const checkpoint = await this.readCheckpoint(origin);
    const end = (await this.store.auditHead())?.seq ?? origin.seq;
    if (checkpoint.status === 'rejected') await this.reportRejectedCheckpoint(checkpoint.seq);

    let start = origin;
    let status: CheckpointStatus = checkpoint.status;
    if (!options.full && checkpoint.status === 'valid' && (await this.rowStillIs(checkpoint.link))) {
      start = checkpoint.link;
      status = 'used';
    }
    let walk = await this.walk(start, end, pageSize);
    if (walk.ok && checkpoint.status === 'valid' && start !== checkpoint.link) walk = await this.confirmCheckpoint(walk, checkpoint.link);
    if (walk.ok && (status === 'rejected' || walk.last.seq > (checkpoint.status === 'valid' ? checkpoint.link.seq : origin.seq))) {
      await this.saveCheckpoint(walk.last);
    }

    const common = { verifiedFrom: start.seq + 1, checkpoint: status };
    if (!walk.ok)
      return { ok: false, rows: walk.firstBadSeq - 1 - origin.seq, firstBadSeq: walk.firstBadSeq, reason: walk.reason, ...common };
    return { ok: true, rows: walk.last.seq - origin.seq, headSeq: walk.last.seq, headHash: walk.last.hash.toString('hex'), ...common };
  }

  private async readCheckpoint(
    origin: Link,
  ): Promise<{ status: 'none' } | { status: 'rejected'; seq: number } | { status: 'valid'; link: Link }> {
    const stored = await this.store.auditCheckpoint();
    if (!stored || stored.seq <= origin.seq) return { status: 'none' };
    const key = await this.keys.keyVersion(SYSTEM_TENANT, 'audit', stored.keyVersion);
    if (!key || !safeEqual(checkpointMac(key, stored), stored.mac)) return { status: 'rejected', seq: stored.seq };
    return { status: 'valid', link: { seq: stored.seq, hash: stored.hash } };
  }

  private async rowStillIs(link: Link): Promise<boolean> {
    const [row] = await this.store.auditRows(link.seq - 1, 1);
    return row?.seq === link.seq && safeEqual(row.hash, link.hash);
  }

  /** After a walk that did not start at an intact checkpoint: the rows it vouched for must all be there. */
  private async confirmCheckpoint(walk: Walk & { ok: true }, link: Link): Promise<Walk> {
    if (walk.last.seq < link.seq) {
      return {
        ok: false,
        last: walk.last,
        firstBadSeq: walk.last.seq + 1,
        reason: `rows up to ${link.seq}, verified earlier, are missing (truncated)`,
      };
    }
    if (!(await this.rowStillIs(link)))
      return { ok: false, last: walk.last, firstBadSeq: link.seq, reason: 'differs from the row verified earlier' };
    return walk;
  }

  private async saveCheckpoint(link: Link): Promise<void> {
    const { version, key } = await this.keys.activeKey(SYSTEM_TENANT, 'audit');
    const unsigned = { seq: link.seq, hash: link.hash, keyVersion: version, createdAt: new Date().toISOString() };
    await this.store.saveAuditCheckpoint({ ...unsigned, mac: checkpointMac(key, unsigned) });
  }

  /** Checks rows after `from` up to `throughSeq` (the head when the run began: later rows wait for the next run). */
  private async walk(from: Link, throughSeq: number, pageSize: number): Promise<Walk> {
    const keys = new Map<number, Buffer | undefined>();
    let last = from;
    let sliceStarted = performance.now();
    while (last.seq < throughSeq) {
      const page = await this.store.auditRows(last.seq, Math.min(pageSize, throughSeq - last.seq));
      if (page.length === 0) return { ok: false, last, firstBadSeq: last.seq + 1, reason: `row ${last.seq + 1} is missing` };
      for (const row of page) {
        const bad = await this.checkRow(row, last, keys);
        if (bad) return { ok: false, last, ...bad };
        last = { seq: row.seq, hash: row.hash };
        if (performance.now() - sliceStarted >= VERIFY_SLICE_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStarted = performance.now();
        }
      }
    }
    return { ok: true, last };
  }

  private async checkRow(
    row: AuditRow,
    previous: Link,
    keys: Map<number, Buffer | undefined>,
  ): Promise<{ firstBadSeq: number; reason: string } | undefined> {
    const expectedSeq = previous.seq + 1;
    if (row.seq !== expectedSeq) return { firstBadSeq: expectedSeq, reason: `row ${expectedSeq} is missing` };
    if (!safeEqual(row.prevHash, previous.hash)) return { firstBadSeq: row.seq, reason: 'does not link to the previous row' };
    if (!keys.has(row.keyVersion)) keys.set(row.keyVersion, await this.keys.keyVersion(SYSTEM_TENANT, 'audit', row.keyVersion));
    const key = keys.get(row.keyVersion);
    if (!key) return { firstBadSeq: row.seq, reason: `audit key version ${row.keyVersion} is unknown` };
    if (!safeEqual(auditMac(key, row.prevHash, row.seq, row, row.keyVersion), row.hash)) {
      return { firstBadSeq: row.seq, reason: 'content does not match its HMAC (edited)' };
    }
    return undefined;
  }
}
