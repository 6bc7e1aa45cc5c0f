import type { TokenRecord } from './vault-store';

/** The write that registered a record, and asks for it (the group commit gives each write its own). */
type InsertOwner = object;

interface Registered {
  owner: InsertOwner;
  records: readonly TokenRecord[];
  /** Its only statement comes at the chain head (an audit append). */
  headOnly: boolean;
  /** Its records not yet sent. */
  waiting: Set<TokenRecord>;
}

/**
 * The records without a fingerprint (random tokens: nothing to look up before their insert) that
 * the writes of one transaction are about to insert, written in one statement the first time a
 * write asks to insert one of them instead of one statement each: the asking write's records, and
 * those of the writes after it as long as the writes up to them would take no lock before their
 * inserts. Taking a later write's token rows ahead of a lock an earlier write takes (a subject row,
 * a data-key row, a deterministic identity) would change the transaction's lock order, and another
 * instance's transaction that took that lock first and then inserts a colliding token would
 * deadlock with it. So a later write joins only when every write up to it appends an audit row and
 * nothing else, or inserts random records only, naming no subject, under data keys the transaction
 * already holds; and only when the asking write's own remaining statements are such inserts too.
 * The writes of a group commit of single-value tokenizes then share one round trip.
 *
 * Each write still asks for each of its records in order and gets the answer a single insert would
 * have given: inserted, or its token taken (nothing written for it; the plan retokenizes, and the
 * new record is inserted on its own). A record that is not registered (a deterministic one, a
 * retokenized one), or that would go alone, is not answered here. A record written for a write
 * that never asks for it would be stored without its count and its audit: `unclaimed` tells the
 * group commit, which must then not commit.
 */
export class UpcomingInserts {
  private readonly writes: Registered[] = [];
  private readonly positions = new Map<InsertOwner, number>();
  /** Sent and not yet asked for: the statement that wrote them. */
  private readonly sent = new Map<TokenRecord, Promise<Set<TokenRecord>>>();
  private readonly tokens = new Set<string>();

  /**
   * `insertAll` writes the records it is given (tokens distinct) with ON CONFLICT DO NOTHING and
   * returns those it wrote; `holdsKey` tells whether the transaction holds a data key version
   * share-locked already.
   */
  constructor(
    private readonly insertAll: (records: TokenRecord[]) => Promise<Set<TokenRecord>>,
    private readonly holdsKey: (tenant: string, version: number) => boolean,
  ) {}

  /**
   * Registers a write of the transaction, in the transaction's order, with the records it is about
   * to insert. A token registered twice: only its first record goes in together.
   */
  add(owner: InsertOwner, records: readonly TokenRecord[], headOnly = false): void {
    const waiting = new Set<TokenRecord>();
    for (const record of records) {
      const id = JSON.stringify([record.tenant, record.token]);
      if (record.fingerprint || this.tokens.has(id)) continue;
      this.tokens.add(id);
      waiting.add(record);
    }
    this.positions.set(owner, this.writes.length);
    this.writes.push({ owner, records, headOnly, waiting });
  }

  /** The outcome of inserting `record` for `owner`, or undefined when it is not an upcoming record of it (insert it alone). */
  async insert(owner: InsertOwner, record: TokenRecord): Promise<'inserted' | 'token-taken' | undefined> {
    let written = this.sent.get(record);
    if (!written) {
      const at = this.positions.get(owner);
      if (at === undefined || !this.writes[at].waiting.has(record)) return undefined;
      const together = this.takeTogether(at);
      if (together.length === 1) return undefined;
      written = this.insertAll(together);
      for (const r of together) this.sent.set(r, written);
    }
    this.sent.delete(record);
    return (await written).has(record) ? 'inserted' : 'token-taken';
  }

  /** Records written that no write has asked for yet. */
  get unclaimed(): number {
    return this.sent.size;
  }

  /** The waiting records of the write at `at`, and of the writes after it that may go ahead (see the class). */
  private takeTogether(at: number): TokenRecord[] {
    const asking = this.writes[at];
    const joining = [asking];
    if (asking.records.every((r) => !r.fingerprint)) {
      for (const later of this.writes.slice(at + 1)) {
        if (!this.takesNoLock(later)) break;
        joining.push(later);
      }
    }
    const together = joining.flatMap((w) => [...w.waiting]);
    for (const w of joining) w.waiting.clear();
    return together;
  }

  private takesNoLock(write: Registered): boolean {
    if (write.headOnly) return true;
    return (
      write.records.length > 0 && write.records.every((r) => !r.fingerprint && !r.subjectHash && this.holdsKey(r.tenant, r.keyVersion))
    );
  }
}
