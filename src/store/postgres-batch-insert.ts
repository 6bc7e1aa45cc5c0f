import type { TokenRecord } from './vault-store';

/** The write that registered a record, and asks for it (the group commit gives each write its own). */
type InsertOwner = object;

/**
 * The records without a fingerprint (random tokens: nothing to look up before their insert) that
 * the writes of one transaction are about to insert, written in one statement the first time a
 * write asks to insert one of them instead of one statement each: the asking write's records and
 * the other writes' records that name no data subject (a subject's row is claimed by its own write
 * before any record of it is written). The writes of a group commit then share one round trip.
 * Each write still asks for each of its records in order and gets the answer a single insert
 * would have given: inserted, or its token taken (nothing written for it; the plan retokenizes,
 * and the new record is inserted on its own). A record that is not registered (a deterministic
 * one, a retokenized one), or that would go alone, is not answered here.
 *
 * A record written for a write that never asks for it would be stored without its count and its
 * audit: `unclaimed` tells the group commit, which must then not commit (it cannot happen while
 * plans insert every record they are given, unless they fail, which undoes the transaction).
 */
export class UpcomingInserts {
  /** Registered, not yet sent, with the write they belong to. */
  private readonly waiting = new Map<TokenRecord, InsertOwner>();
  /** Sent and not yet asked for: the statement that wrote them. */
  private readonly sent = new Map<TokenRecord, Promise<Set<TokenRecord>>>();
  private readonly tokens = new Set<string>();

  /**
   * `insertAll` writes the records it is given (tokens distinct) with ON CONFLICT DO NOTHING and
   * returns those it wrote.
   */
  constructor(private readonly insertAll: (records: TokenRecord[]) => Promise<Set<TokenRecord>>) {}

  /** Registers the records a write is about to insert. A token registered twice: only its first record goes in together. */
  add(owner: InsertOwner, records: readonly TokenRecord[]): void {
    for (const record of records) {
      const id = JSON.stringify([record.tenant, record.token]);
      if (record.fingerprint || this.tokens.has(id)) continue;
      this.tokens.add(id);
      this.waiting.set(record, owner);
    }
  }

  /** The outcome of inserting `record` for `owner`, or undefined when it is not an upcoming record of it (insert it alone). */
  async insert(owner: InsertOwner, record: TokenRecord): Promise<'inserted' | 'token-taken' | undefined> {
    let written = this.sent.get(record);
    if (!written) {
      if (this.waiting.get(record) !== owner) return undefined;
      const together = [...this.waiting].filter(([r, o]) => o === owner || !r.subjectHash).map(([r]) => r);
      for (const r of together) this.waiting.delete(r);
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
}
