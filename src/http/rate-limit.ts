import type { ServerResponse } from 'node:http';
import { VaultError } from '../errors';
import { sendError } from './error-handler';
import type { VaultMetrics } from './metrics';
import type { ApiRequest, Next } from './pipeline';

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

/** Per-principal token buckets; a principal gets the most generous limit among its roles. */
export function principalRateLimit(limits: { default: Limit; roles: Record<string, Limit> }, metrics: VaultMetrics | undefined) {
  const rolesOf = new Map<string, readonly string[]>();
  const buckets = new KeyedBuckets((principalId) => {
    const configured = (rolesOf.get(principalId) ?? []).map((r) => limits.roles[r]).filter(Boolean);
    if (configured.length === 0) return limits.default;
    return configured.reduce((a, b) => (b.ratePerSecond > a.ratePerSecond ? b : a));
  });
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    const principal = req.principal!;
    rolesOf.set(principal.id, principal.roles);
    const result = buckets.take(principal.id, Date.now());
    if (!result.ok) {
      metrics?.throttled.inc({ reason: 'principal' });
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(result.retryAfterMs / 1000))));
      sendError(res, req.id, new VaultError('rate_limited'));
      return;
    }
    next();
  };
}
