/** How much a cached key is needed: the lowest rank is evicted first. */
export type KeyRank = number;

/**
 * Unwrapped keys in memory: bounded, expiring, evicting the least recently used key of the lowest
 * rank first. The key manager ranks the keys every request needs (the audit key, tenants' active
 * keys) above old versions, so a burst of reads under old versions cannot push them out — which
 * matters most while KMS is down and nothing evicted can come back.
 *
 * Evicted keys are not zeroed: a request in flight may still hold the buffer (tokenize keeps its
 * data key across awaits, and the store's retry seals with it later), and sealing under a zeroed
 * key would be far worse than a key left to the garbage collector.
 */
export class KeyCache {
  /** In order of use, least recent first (a Map iterates in insertion order; a hit re-inserts). */
  private readonly entries = new Map<string, { key: Buffer; expires: number }>();

  constructor(
    private readonly options: { ttlMs: number; maxEntries: number },
    private readonly rank: (id: string) => KeyRank = () => 0,
  ) {}

  get(id: string): Buffer | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    if (entry.expires <= Date.now()) return undefined;
    this.entries.set(id, entry);
    return entry.key;
  }

  set(id: string, key: Buffer): void {
    this.entries.delete(id);
    while (this.entries.size >= this.options.maxEntries) this.evictOne();
    this.entries.set(id, { key, expires: Date.now() + this.options.ttlMs });
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  /** An expired entry if there is one, else the least recently used of the lowest rank. */
  private evictOne(): void {
    const now = Date.now();
    let victim: { id: string; rank: KeyRank } | undefined;
    for (const [id, entry] of this.entries) {
      if (entry.expires <= now) {
        victim = { id, rank: -Infinity };
        break;
      }
      const rank = this.rank(id);
      if (!victim || rank < victim.rank) victim = { id, rank };
      if (rank <= 0) break; // nothing ranks lower: this is the least recently used of the lowest rank
    }
    if (victim) this.entries.delete(victim.id);
  }
}
