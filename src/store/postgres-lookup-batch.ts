/**
 * Token lookups that arrive in one event-loop turn (or while maxInFlight statements are out),
 * answered by one statement: under load, each single-token detokenize would otherwise take a
 * pooled connection and a round trip of its own (and the server a statement), for a probe of one
 * primary-key entry.
 */
export class LookupBatch<Row extends { token: string }> {
  private pending: Array<{ tokens: readonly string[]; resolve(rows: Map<string, Row[]>): void; reject(error: unknown): void }> = [];
  private pendingTokens = 0;
  private inFlight = 0;
  private scheduled = false;

  /**
   * @param lookup every row of the distinct tokens given, in one statement (one snapshot)
   * @param maxTokens distinct tokens per statement at most; a lookup larger than that goes alone
   * @param maxInFlight statements in flight at once; lookups arriving meanwhile wait and go together
   */
  constructor(
    private readonly lookup: (tokens: string[]) => Promise<Row[]>,
    private readonly maxTokens: number,
    private readonly maxInFlight: number,
  ) {}

  /** The rows of each token found; a token that names none is absent. */
  find(tokens: readonly string[]): Promise<Map<string, Row[]>> {
    return new Promise((resolve, reject) => {
      if (this.pendingTokens + tokens.length > this.maxTokens) this.flush();
      this.pending.push({ tokens, resolve, reject });
      this.pendingTokens += tokens.length;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.pending.length === 0 || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight < this.maxInFlight) this.flush();
    });
  }

  private flush(): void {
    const callers = this.pending.splice(0);
    this.pendingTokens = 0;
    if (callers.length === 0) return;
    const wanted = [...new Set(callers.flatMap((c) => c.tokens))];
    this.inFlight++;
    this.lookup(wanted)
      .finally(() => {
        this.inFlight--;
        this.schedule();
      })
      .then(
        (rows) => {
          const byToken = new Map<string, Row[]>();
          for (const row of rows) {
            const list = byToken.get(row.token);
            if (list) list.push(row);
            else byToken.set(row.token, [row]);
          }
          for (const caller of callers) {
            const found = new Map<string, Row[]>();
            for (const token of caller.tokens) {
              const list = byToken.get(token);
              if (list) found.set(token, list);
            }
            caller.resolve(found);
          }
        },
        (error: unknown) => {
          for (const caller of callers) caller.reject(error);
        },
      );
  }
}
