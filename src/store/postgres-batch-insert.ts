import type { TokenRecord } from './vault-store';

/**
 * The records of an insertTokens batch that have no fingerprint (random tokens: nothing to look up
 * before their insert), written in one statement the first time the plan asks to insert one of
 * them, instead of one statement each. The plan still asks for each record in its order and gets
 * the answer a single insert would have given: inserted, or its token taken (nothing written for
 * it; the plan retokenizes, and the new record is inserted on its own). A record the plan asks for
 * that is not one of them (a deterministic one, a retokenized one) is not answered here.
 */
export class UpcomingInserts {
  private readonly pending: Set<TokenRecord>;
  private inserted?: Promise<Set<TokenRecord>>;

  /**
   * `insertAll` writes the records it is given (tokens distinct) with ON CONFLICT DO NOTHING and
   * returns those it wrote.
   */
  constructor(
    batch: readonly TokenRecord[],
    private readonly insertAll: (records: TokenRecord[]) => Promise<Set<TokenRecord>>,
  ) {
    // A token twice in the batch: only its first record goes in together; the other is asked for alone (and finds it taken).
    const firstOfToken = new Map<string, TokenRecord>();
    for (const record of batch) {
      const id = JSON.stringify([record.tenant, record.token]);
      if (!record.fingerprint && !firstOfToken.has(id)) firstOfToken.set(id, record);
    }
    this.pending = new Set(firstOfToken.size > 1 ? firstOfToken.values() : []);
  }

  /** The outcome of inserting `record`, or undefined when it is not one of the upcoming records (insert it alone). */
  async insert(record: TokenRecord): Promise<'inserted' | 'token-taken' | undefined> {
    if (!this.pending.has(record)) return undefined;
    this.inserted ??= this.insertAll([...this.pending]);
    const inserted = await this.inserted;
    this.pending.delete(record);
    return inserted.has(record) ? 'inserted' : 'token-taken';
  }
}
