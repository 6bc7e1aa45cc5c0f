/** A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. Time is passed in (testable). */
class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `cost` tokens if there are enough; otherwise says how long until there will be. */
  take(now: number, cost = 1): { ok: true } | { ok: false; retryAfterMs: number } {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    if (this.tokens >= cost) {
      this.tokens -= cost;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((cost - this.tokens) / this.ratePerSecond) * 1000) };
  }

  /** Whether `cost` tokens are available, without taking them. */
  peek(now: number, cost = 1): number {
    const tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    return tokens >= cost ? 0 : Math.ceil(((cost - tokens) / this.ratePerSecond) * 1000);
  }
}

export interface Limit {
  ratePerSecond: number;
  burst: number;
}

/** One bucket per key (a principal, a client address), bounded in number; the oldest is dropped. */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly limitFor: (key: string) => Limit,
    private readonly maxKeys = 100_000,
  ) {}

  take(key: string, now: number, cost = 1) {
    return this.bucket(key, now).take(now, cost);
  }

  /** Milliseconds until `key` may spend again (0 = now), without spending. */
  wait(key: string, now: number): number {
    return this.buckets.get(key)?.peek(now) ?? 0;
  }

  private bucket(key: string, now: number): TokenBucket {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
      const limit = this.limitFor(key);
      bucket = new TokenBucket(limit.ratePerSecond, limit.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket;
  }
}
