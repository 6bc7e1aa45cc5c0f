import { createReadStream, existsSync, unlinkSync } from 'node:fs';
import { writeFileAtomicWith } from '../atomic-write';
import { createInterface } from 'node:readline';
import { KeyManager } from '../keys/key-manager';
import { SYSTEM_TENANT } from '../domain/tenants';
import { AuditRow, AuditSealer, VaultStore } from '../store/vault-store';
import { safeEqual, segmentMac } from './audit-marks';
import { ChainVerifier, DEFAULT_PAGE_SIZE, Link, RowChecker } from './audit-verification';

/*
 * An archive file is JSON lines: a header naming the first row and the hash it chains from, one
 * line per row (as GET /v1/audit shows it), and a trailer naming the last row and its hash — the
 * anchoring head the first row left in the vault chains from. The vault keeps a MACed record of
 * every archived segment, so a file can be checked against the vault it came from.
 */
const ARCHIVE_FORMAT = 'pii-vault-audit-archive';

interface ArchiveHeader {
  format: typeof ARCHIVE_FORMAT;
  version: 1;
  fromSeq: number;
  prevHash: string;
}

interface ArchiveTrailer {
  end: true;
  throughSeq: number;
  rows: number;
  headHash: string;
}

export interface ArchiveSummary {
  fromSeq: number;
  throughSeq: number;
  rows: number;
  headHash: string;
}

export type ArchiveCheck = ({ ok: true } & ArchiveSummary) | { ok: false; line: number; reason: string };

/** The archive could not be made; nothing was pruned. */
class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveError';
  }
}

export class AuditArchiver {
  constructor(
    private readonly store: VaultStore,
    private readonly keys: KeyManager,
    private readonly verifier: ChainVerifier,
    private readonly sealer: () => Promise<AuditSealer>,
  ) {}

  /**
   * Verifies the rows before `beforeSeq` and exports them to `out` (a new file: an existing one is
   * never replaced), checks the written file, and only then prunes exactly those rows from the
   * store, recording the segment and an audit row in the same transaction.
   */
  async archive(beforeSeq: number, out: string): Promise<ArchiveSummary> {
    if (existsSync(out)) throw new ArchiveError(`${out} already exists; archives are never overwritten`);
    const origin = await this.verifier.origin();
    if (!origin.ok) throw new ArchiveError(`row ${origin.firstBadSeq}: ${origin.reason}; nothing archived`);
    const from = origin.link;
    const head = await this.store.auditHead();
    const throughSeq = beforeSeq - 1;
    if (throughSeq <= from.seq) throw new ArchiveError(`rows before ${beforeSeq} are already archived; nothing to do`);
    if (!head || throughSeq > head.seq)
      throw new ArchiveError(`--before must be at most ${(head?.seq ?? from.seq) + 1}, one past the newest row`);

    // Published (never over an existing file) only once the written archive verifies.
    const summary = await writeFileAtomicWith(
      out,
      async (write, temp) => {
        const written = await this.export(from, throughSeq, write);
        const check = await this.check(temp, { recorded: false });
        if (!check.ok) throw new ArchiveError(`the written archive does not verify (line ${check.line}: ${check.reason}); nothing pruned`);
        return written;
      },
      { exclusive: true },
    );

    const { version, key } = await this.keys.activeKey(SYSTEM_TENANT, 'audit');
    const unsigned = {
      fromSeq: summary.fromSeq,
      throughSeq: summary.throughSeq,
      prevHash: from.hash,
      headHash: Buffer.from(summary.headHash, 'hex'),
      archivedAt: new Date().toISOString(),
      keyVersion: version,
    };
    const entry = {
      ts: unsigned.archivedAt,
      requestId: 'cli',
      principal: 'cli',
      tenant: null,
      action: 'audit:archive',
      types: [],
      tokens: [],
      purpose: null,
      outcome: 'allow' as const,
      reason: `rows ${summary.fromSeq}–${summary.throughSeq} archived and pruned (head ${summary.headHash})`,
      subjects: [],
    };
    if (!(await this.store.pruneAuditSegment({ ...unsigned, mac: segmentMac(key, unsigned) }, { entry, sealer: await this.sealer() }))) {
      unlinkSync(out);
      throw new ArchiveError('the rows changed while they were archived; nothing pruned');
    }
    return summary;
  }

  /** Writes the verified rows after `from` through `throughSeq`; fails (writing no archive) at the first bad row. */
  private async export(from: Link, throughSeq: number, writeChunk: (chunk: string) => void): Promise<ArchiveSummary> {
    const write = (line: object) => writeChunk(JSON.stringify(line) + '\n');
    const header: ArchiveHeader = { format: ARCHIVE_FORMAT, version: 1, fromSeq: from.seq + 1, prevHash: from.hash.toString('hex') };
    write(header);
    const walk = await this.verifier.walk(from, throughSeq, DEFAULT_PAGE_SIZE, (row) => write(publicRow(row)));
    if (!walk.ok) throw new ArchiveError(`row ${walk.firstBadSeq}: ${walk.reason}; nothing archived`);
    const summary = { fromSeq: from.seq + 1, throughSeq, rows: throughSeq - from.seq, headHash: walk.last.hash.toString('hex') };
    const trailer: ArchiveTrailer = { end: true, throughSeq, rows: summary.rows, headHash: summary.headHash };
    write(trailer);
    return summary;
  }

  /**
   * Verifies an archive file: its header, every row's MAC under the vault's audit key and its link
   * to the row before (the first to the header's hash), and the trailer naming the last row. With
   * `recorded`, the segment must also match a verified archive record of this vault.
   */
  async check(file: string, { recorded }: { recorded: boolean }): Promise<ArchiveCheck> {
    const checker = new RowChecker(this.keys);
    let header: ArchiveHeader | undefined;
    let trailer: ArchiveTrailer | undefined;
    let last: Link | undefined;
    let line = 0;
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const text of lines) {
      line++;
      if (trailer) return { ok: false, line, reason: 'text after the trailer' };
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(text);
      } catch {
        return { ok: false, line, reason: 'not JSON' };
      }
      if (!header) {
        if (!isHeader(parsed)) return { ok: false, line, reason: `not a ${ARCHIVE_FORMAT} v1 header` };
        header = parsed;
        last = { seq: header.fromSeq - 1, hash: Buffer.from(header.prevHash, 'hex') };
      } else if (parsed.end === true) {
        trailer = parsed as unknown as ArchiveTrailer;
      } else {
        const row = { ...(parsed as unknown as AuditRow), prevHash: last!.hash, hash: Buffer.from(String(parsed.hash), 'hex') };
        const bad = await checker.check(row, last!);
        if (bad) return { ok: false, line, reason: `row ${bad.firstBadSeq}: ${bad.reason}` };
        last = { seq: row.seq, hash: row.hash };
      }
    }
    if (!header || !last) return { ok: false, line, reason: 'empty file' };
    const summary = {
      fromSeq: header.fromSeq,
      throughSeq: last.seq,
      rows: last.seq - header.fromSeq + 1,
      headHash: last.hash.toString('hex'),
    };
    if (!trailer) return { ok: false, line, reason: 'no trailer: the file is truncated' };
    if (trailer.throughSeq !== summary.throughSeq || trailer.rows !== summary.rows || trailer.headHash !== summary.headHash) {
      return { ok: false, line, reason: 'the trailer does not match the rows' };
    }
    if (summary.rows < 1) return { ok: false, line, reason: 'no rows' };
    if (recorded) {
      const origin = await this.verifier.origin();
      if (!origin.ok) return { ok: false, line, reason: `the vault's archive records do not verify: ${origin.reason}` };
      const match = origin.segments.find(
        (s) =>
          s.fromSeq === summary.fromSeq &&
          s.throughSeq === summary.throughSeq &&
          safeEqual(s.prevHash, Buffer.from(header!.prevHash, 'hex')) &&
          safeEqual(s.headHash, last!.hash),
      );
      if (!match) return { ok: false, line, reason: 'this segment is not recorded as archived by this vault' };
    }
    return { ok: true, ...summary };
  }
}

function isHeader(value: Record<string, unknown>): value is ArchiveHeader & Record<string, unknown> {
  return (
    value.format === ARCHIVE_FORMAT &&
    value.version === 1 &&
    Number.isSafeInteger(value.fromSeq) &&
    (value.fromSeq as number) >= 1 &&
    typeof value.prevHash === 'string' &&
    /^[0-9a-f]{64}$/.test(value.prevHash)
  );
}

/** A row as GET /v1/audit shows it. */
function publicRow({ prevHash: _prev, hash, ...row }: AuditRow) {
  return { ...row, hash: hash.toString('hex') };
}
