import { auditEntry, VaultDeps } from './context';
import { errorForLog } from './log-error';

/** How failed authentications are written down under attack. */
interface AuthFailureAuditLimits {
  /** Length of a summary window. */
  windowMs: number;
  /** Failures per client address per window audited one by one. */
  perAddress: number;
  /** Failures per window audited one by one, all addresses together. */
  total: number;
}

export const AUTH_FAILURE_AUDIT: AuthFailureAuditLimits = { windowMs: 60_000, perAddress: 5, total: 100 };

/** Beyond this many distinct addresses in one window, further ones are only counted, not tracked. */
const MAX_TRACKED_ADDRESSES = 10_000;

interface Window {
  start: number;
  perAddress: Map<string, number>;
  audited: number;
  /** Failures counted but not audited one by one, and from how many addresses. */
  summarised: number;
  summarisedFrom: Set<string>;
}

/**
 * Audits refused authentications without letting a flood write a row per request: per window, the
 * first few failures of each address (and at most `total` in all) get their own row; the rest are
 * counted and written as one summary row when the window ends. Every failure is accounted for.
 */
export class AuthFailureAudit {
  private window: Window;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: VaultDeps,
    private readonly limits: AuthFailureAuditLimits = AUTH_FAILURE_AUDIT,
  ) {
    this.window = this.freshWindow(deps.now());
  }

  /**
   * One refused authentication. `address` is shown in the row; `key` is what it is counted under
   * (an IPv6 /64, say). Rejects when a row that had to be written could not be (fail closed).
   */
  async record(requestId: string, address: string, key: string, reason: string): Promise<void> {
    const now = this.deps.now();
    if (now >= this.window.start + this.limits.windowMs) await this.flush(now);
    const window = this.window;
    const seen = (window.perAddress.get(key) ?? 0) + 1;
    if (seen > 1 || window.perAddress.size < MAX_TRACKED_ADDRESSES) window.perAddress.set(key, seen);
    if (seen <= this.limits.perAddress && window.audited < this.limits.total && window.perAddress.has(key)) {
      window.audited++;
      await this.append(requestId, `${reason} from ${address}`);
      return;
    }
    window.summarised++;
    if (window.summarisedFrom.size < MAX_TRACKED_ADDRESSES) window.summarisedFrom.add(key);
    this.timer ??= setTimeout(() => this.flushOnTimer(), Math.max(0, window.start + this.limits.windowMs - now)).unref();
  }

  /**
   * Writes the summary row of the current window (if it counted anything) and starts a new one.
   * Never rejects: a summary that cannot be written is logged with its count.
   */
  async flush(now = this.deps.now()): Promise<void> {
    const ended = this.window;
    this.window = this.freshWindow(now);
    clearTimeout(this.timer);
    this.timer = undefined;
    if (ended.summarised === 0) return;
    const from = new Date(ended.start).toISOString();
    const addresses = ended.summarisedFrom.size >= MAX_TRACKED_ADDRESSES ? `${MAX_TRACKED_ADDRESSES}+` : String(ended.summarisedFrom.size);
    try {
      await this.append(
        'auth-failure-summary',
        `${ended.summarised} further failed authentications from ${addresses} addresses since ${from}, not audited one by one (rate-summarised)`,
      );
    } catch (err) {
      this.deps.logger.error(
        { error: errorForLog(err), failures: ended.summarised, since: from },
        'the summary of failed authentications could not be audited',
      );
    }
  }

  private flushOnTimer(): void {
    void this.flush();
  }

  private append(requestId: string, reason: string) {
    return this.deps.audit.append(
      auditEntry(
        this.deps,
        { principal: { id: 'anonymous', roles: [], tenants: [] }, requestId },
        { action: 'authenticate', outcome: 'deny', reason },
      ),
    );
  }

  private freshWindow(start: number): Window {
    return { start, perAddress: new Map(), audited: 0, summarised: 0, summarisedFrom: new Set() };
  }
}
