import { randomUUID } from 'node:crypto';
import { describeExpiredCounts, inCountOrder } from '../store/rules/retention';
import type { ExpiredCount } from '../store/vault-store';
import { Caller, SYSTEM_CALLER, VaultDeps, auditEntry } from './context';
import { errorForLog } from './log-error';

/** What a purge deleted (or, dry, found expired): counts per tenant and type, never a token. */
export interface PurgeReport {
  dryRun: boolean;
  purged: number;
  counts: ExpiredCount[];
}

/** The lease that makes one instance at a time run the background purge on a shared database. */
const PURGE_LEASE = 'retention-purge';
/** Long enough for a batch; renewed before each one, and released when the run ends. */
const PURGE_LEASE_MS = 60_000;
/** Room for live traffic between two purge transactions. */
const PAUSE_BETWEEN_BATCHES_MS = 10;
/** The first run after start, unless the interval is shorter. */
const FIRST_RUN_DELAY_MS = 5_000;

/**
 * Deletes every record expired when the run starts, in transactions of `deps.purge.batchSize`
 * records, each with its audit row of counts (see VaultStore.purgeExpired), pausing between them.
 * `mayContinue` is asked before every batch (the background task renews its lease there).
 * A dry run deletes nothing and reports what is expired; it reads the records' metadata, so it is
 * audited too (`retention:purge-dry-run`, counts only).
 */
export async function purgeExpired(
  deps: VaultDeps,
  caller: Caller,
  options: { dryRun?: boolean; mayContinue?: () => Promise<boolean> } = {},
): Promise<PurgeReport> {
  const now = deps.now();
  if (options.dryRun) {
    const counts = await deps.store.expiredCounts(now);
    const purged = sum(counts);
    await deps.audit.append(
      auditEntry(deps, caller, {
        action: 'retention:purge-dry-run',
        outcome: 'allow',
        types: [...new Set(counts.map((c) => c.type))].sort(),
        reason: `${purged} expired records would be purged${purged ? `: ${describeExpiredCounts(counts)}` : ''}`,
      }),
    );
    return { dryRun: true, purged, counts };
  }
  const batches: ExpiredCount[][] = [];
  while (!options.mayContinue || (await options.mayContinue())) {
    const audit = { entry: auditEntry(deps, caller, { action: 'retention:purge', outcome: 'allow' }), sealer: await deps.audit.sealer() };
    const counts = await deps.store.purgeExpired(now, deps.purge.batchSize, audit);
    if (counts.length === 0) break;
    batches.push(counts);
    await new Promise((resolve) => setTimeout(resolve, PAUSE_BETWEEN_BATCHES_MS));
  }
  const counts = mergeCounts(batches.flat());
  return { dryRun: false, purged: sum(counts), counts };
}

/**
 * The server's background purge: every `deps.purge.intervalMs` (never when 0), on the instance
 * that holds the purge lease in the database, so that several instances on one PostgreSQL database
 * do not each purge (and audit) the same batch. Runs never overlap, failures are logged (class and
 * code) and retried at the next interval, and a log line tells the counts only.
 */
export class PurgeTask {
  private readonly owner = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopping = false;

  constructor(private readonly deps: VaultDeps) {}

  start(): void {
    if (this.deps.purge.intervalMs > 0) this.schedule(Math.min(FIRST_RUN_DELAY_MS, this.deps.purge.intervalMs));
  }

  /** Lets a running purge finish its current batch, then gives up the lease. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One run, if this instance gets the lease; undefined when another instance holds it. */
  async runOnce(): Promise<PurgeReport | undefined> {
    const { store, logger } = this.deps;
    const holdLease = async () => !this.stopping && (await store.acquireLease(PURGE_LEASE, this.owner, PURGE_LEASE_MS));
    if (!(await holdLease())) return undefined;
    try {
      const report = await purgeExpired(this.deps, SYSTEM_CALLER, { mayContinue: holdLease });
      if (report.purged > 0) logger.info({ purged: report.purged, counts: report.counts }, 'expired records purged');
      return report;
    } finally {
      await store.releaseLease(PURGE_LEASE, this.owner).catch(() => undefined);
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopping) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .catch((err: unknown) =>
          this.deps.logger.warn({ error: errorForLog(err) }, 'purge of expired records failed; retrying at the next interval'),
        )
        .finally(() => this.schedule(this.deps.purge.intervalMs));
    }, delayMs).unref();
  }
}

function mergeCounts(counts: ExpiredCount[]): ExpiredCount[] {
  const merged = new Map<string, ExpiredCount>();
  for (const c of counts) {
    const key = `${c.tenant}/${c.type}`;
    merged.set(key, { ...c, records: (merged.get(key)?.records ?? 0) + c.records });
  }
  return inCountOrder([...merged.values()]);
}

function sum(counts: readonly ExpiredCount[]): number {
  return counts.reduce((n, c) => n + c.records, 0);
}
