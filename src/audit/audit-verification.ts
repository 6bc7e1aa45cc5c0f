import { KeyManager } from '../keys/key-manager';
import { SYSTEM_TENANT } from '../domain/tenants';
import { AuditRow, AuditSegment, GENESIS_HASH, VaultStore } from '../store/vault-store';
import { auditMac, checkpointMac, safeEqual, segmentMac } from './audit-marks';

/**
 * What the stored checkpoint was to this verification: `none` (absent), `used` (intact, and the
 * verification started after it), `valid` (intact, not needed: a full run), `rejected` (its MAC does
 * not verify: forged or damaged; a full re-verify was done instead).
 */
type CheckpointStatus = 'none' | 'used' | 'valid' | 'rejected';

export type VerifyResult = (
  { ok: true; rows: number; headSeq: number; headHash: string } | { ok: false; rows: number; firstBadSeq: number; reason: string }
) & {
  /** The first row this run checked (rows before it were verified by an earlier run). */
  verifiedFrom: number;
  checkpoint: CheckpointStatus;
  /** The last row exported to an archive and pruned (0: none); `rows` counts the rows after it. */
  archivedThrough: number;
};

export interface VerifyOptions {
  /** Check every stored row, not only those after the checkpoint. */
  full?: boolean;
  /** Rows read per store call. */
  pageSize?: number;
}

/** The longest verification keeps the event loop before letting other work (requests, probes) run. */
const VERIFY_SLICE_MS = 10;
export const DEFAULT_PAGE_SIZE = 200;

/** A row known to be good (seq 0 with the genesis hash: before the first row). */
export interface Link {
  seq: number;
  hash: Buffer;
}

type Problem = { firstBadSeq: number; reason: string };
type Walk = { ok: true; last: Link } | ({ ok: false; last: Link } & Problem);
/** Where the stored chain starts: after the last archived segment, whose records all verify. */
type Origin = { ok: true; link: Link; segments: AuditSegment[] } | ({ ok: false } & Problem);

const GENESIS: Link = { seq: 0, hash: GENESIS_HASH };

/** Checks one row against the row before it; remembers the audit key versions it looked up. */
export class RowChecker {
  private readonly versions = new Map<number, Buffer | undefined>();

  constructor(private readonly keys: KeyManager) {}

  async check(row: AuditRow, previous: Link): Promise<Problem | undefined> {
    const expectedSeq = previous.seq + 1;
    if (row.seq !== expectedSeq) return { firstBadSeq: expectedSeq, reason: `row ${expectedSeq} is missing` };
    if (!safeEqual(row.prevHash, previous.hash)) return { firstBadSeq: row.seq, reason: 'does not link to the previous row' };
    const key = await this.key(row.keyVersion);
    if (!key) return { firstBadSeq: row.seq, reason: `audit key version ${row.keyVersion} is unknown` };
    if (!safeEqual(auditMac(key, row.prevHash, row.seq, row, row.keyVersion), row.hash)) {
      return { firstBadSeq: row.seq, reason: 'content does not match its HMAC (edited)' };
    }
    return undefined;
  }

  async key(version: number): Promise<Buffer | undefined> {
    if (!this.versions.has(version)) this.versions.set(version, await this.keys.keyVersion(SYSTEM_TENANT, 'audit', version));
    return this.versions.get(version);
  }
}

/** Lets other work (requests, probes) run between slices of a long loop. */
class Slicer {
  private started = performance.now();

  async pause(): Promise<void> {
    if (performance.now() - this.started < VERIFY_SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.started = performance.now();
  }
}

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
    const found = await this.origin();
    if (!found.ok) {
      return {
        ok: false,
        rows: 0,
        firstBadSeq: found.firstBadSeq,
        reason: found.reason,
        verifiedFrom: 1,
        checkpoint: 'none',
        archivedThrough: 0,
      };
    }
    // No row may be stored under a number an archived segment covers: verification would never look at it.
    const [first] = await this.store.auditRows(0, 1);
    if (first && first.seq <= found.link.seq) {
      return {
        ok: false,
        rows: 0,
        firstBadSeq: first.seq,
        reason: `row ${first.seq} is stored, but rows up to ${found.link.seq} were archived (put back or planted)`,
        verifiedFrom: 1,
        checkpoint: 'none',
        archivedThrough: found.link.seq,
      };
    }
    const result = await this.verifyFrom(found.link, options);
    // An archive pruned rows while this run read them: what looked missing was archived; run again.
    if (!result.ok && (await this.store.auditSegments()).length !== found.segments.length) return this.verify(options);
    return result;
  }

  /** Checks the archived segments' records: each MAC under the audit key, each following the one before. */
  async origin(): Promise<Origin> {
    const checker = new RowChecker(this.keys);
    const segments = await this.store.auditSegments();
    let link = GENESIS;
    for (const s of segments) {
      const key = await checker.key(s.keyVersion);
      const what = `the archive record of rows ${s.fromSeq}–${s.throughSeq}`;
      if (!key || !safeEqual(segmentMac(key, s), s.mac))
        return { ok: false, firstBadSeq: s.fromSeq, reason: `${what} does not verify (forged)` };
      if (s.fromSeq !== link.seq + 1 || !safeEqual(s.prevHash, link.hash)) {
        return { ok: false, firstBadSeq: s.fromSeq, reason: `${what} does not follow the previous one` };
      }
      link = { seq: s.throughSeq, hash: s.headHash };
    }
    return { ok: true, link, segments };
  }

  private async verifyFrom(origin: Link, options: VerifyOptions): Promise<VerifyResult> {
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
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

    const common = { verifiedFrom: start.seq + 1, checkpoint: status, archivedThrough: origin.seq };
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

  /**
   * Checks rows after `from` up to `throughSeq` (the head when the run began: later rows wait for
   * the next run), handing each good row to `visit`.
   */
  async walk(from: Link, throughSeq: number, pageSize = DEFAULT_PAGE_SIZE, visit?: (row: AuditRow) => void): Promise<Walk> {
    const checker = new RowChecker(this.keys);
    const slicer = new Slicer();
    let last = from;
    while (last.seq < throughSeq) {
      const page = await this.store.auditRows(last.seq, Math.min(pageSize, throughSeq - last.seq));
      if (page.length === 0) return { ok: false, last, firstBadSeq: last.seq + 1, reason: `row ${last.seq + 1} is missing` };
      for (const row of page) {
        const bad = await checker.check(row, last);
        if (bad) return { ok: false, last, ...bad };
        visit?.(row);
        last = { seq: row.seq, hash: row.hash };
        await slicer.pause();
      }
    }
    return { ok: true, last };
  }
}
