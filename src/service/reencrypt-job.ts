import { randomUUID } from 'node:crypto';
import { IntegrityError, open, seal } from '../crypto/aead';
import type { JobView } from '../contract/schemas';
import { VaultError } from '../errors';
import { JobRecord, ReencryptedRecord, StaleDataKeyError, TokenRecord } from '../store/vault-store';
import { KeyUnavailableError } from '../crypto/key-provider';
import { principalCoversTenant } from '../policy/policy';
import { Caller, SYSTEM_CALLER, VaultDeps, auditEntry } from './context';
import { authoriseTenants, TenantScope } from './keys';
import { CURRENT_BINDING, openSubject, recordAad, sealSubject } from './record-crypto';
import { inferredPreserve } from '../domain/token-formats';
import type { DataKey } from '../keys/key-manager';
import { errorForLog, errorSummary } from './log-error';

/**
 * Moves records from old data-key versions to the active one, and from older bindings to the
 * current one (so their every security-relevant column becomes bound), in small transactions, pausing
 * between batches so live traffic keeps the database. Progress is persisted with each batch, so
 * after a crash or restart `resumeAll` carries on where the job stood.
 *
 * Several instances on one database: a job runs on the instance holding its lease (store.leaseJob),
 * renewed before every batch. The others wait for it, checking every half lease, and one of them
 * takes the job over once the holder stops renewing (it died); a holder that finds its lease taken
 * stops before its next batch. Swaps are conditional on each record's old version, so even two
 * instances briefly working on one job never swap a record twice, and the progress counts stay exact.
 */
export class ReencryptJobs {
  private readonly running = new Map<string, Promise<void>>();
  private stopping = false;
  /** This instance, as a lease holder. */
  private readonly owner = randomUUID();
  private scan: NodeJS.Timeout | undefined;
  private readonly wakeOnStop = new Set<() => void>();

  constructor(private readonly deps: VaultDeps) {}

  async start(caller: Caller, scope: TenantScope): Promise<JobView> {
    const tenants = await authoriseTenants(this.deps, caller, 'keys:rotate', scope);
    const now = this.deps.now();
    const job: JobRecord = {
      id: randomUUID(),
      kind: 'reencrypt',
      tenants,
      state: 'running',
      total: await this.remaining(tenants),
      done: 0,
      failed: 0,
      requestedBy: caller.principal.id,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
      error: null,
    };
    await this.deps.audit.append(
      auditEntry(this.deps, caller, {
        action: 'keys:reencrypt',
        outcome: 'allow',
        tenant: tenants.length === 1 ? tenants[0] : null,
        reason: `job ${job.id} started: ${job.total} records`,
      }),
    );
    await this.deps.store.insertJob(job);
    this.launch(job);
    return toJobView(job);
  }

  async view(caller: Caller, id: string): Promise<JobView> {
    const job = await this.deps.store.job(id);
    const visible = job && job.tenants.every((t) => principalCoversTenant(caller.principal, t));
    if (!job || !visible) throw new VaultError('not_found', 'No such job.');
    for (const tenant of job.tenants) await authoriseTenants(this.deps, caller, 'keys:read', { tenant });
    await this.deps.audit.append(auditEntry(this.deps, caller, { action: 'keys:read', outcome: 'allow', reason: `job ${id}` }));
    return toJobView(job);
  }

  /**
   * Restarts the jobs a previous process left running. Each resumes by scanning again for records
   * not yet under the active key, so its count of unopenable records starts over.
   */
  async resumeAll(): Promise<void> {
    await this.launchUnfinished();
    // Jobs started on other instances: this one takes them over if their holder dies.
    this.scan ??= setInterval(() => void this.launchUnfinished().catch(() => undefined), this.deps.reencrypt.leaseMs).unref();
  }

  private async launchUnfinished(): Promise<void> {
    if (this.stopping) return;
    for (const job of await this.deps.store.unfinishedJobs()) this.launch(job);
  }

  /** Lets running jobs finish their current batch, then stops them and gives up their leases (they resume at next start). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.scan);
    for (const wake of this.wakeOnStop) wake();
    await Promise.allSettled([...this.running.values()]);
  }

  /** Resolves when a job started in this process has finished (tests, CLI `--wait`). */
  async settled(id: string): Promise<void> {
    await this.running.get(id);
  }

  private launch(job: JobRecord): void {
    if (this.running.has(job.id)) return;
    const run = this.run(job).finally(() => this.running.delete(job.id));
    this.running.set(job.id, run);
  }

  /**
   * Once no record of any tenant is behind (every one under its tenant's active key and binding),
   * none of binding 1 remains: from then on the vault refuses them (see RecordBindingControl).
   */
  private async refuseLegacyOnceNoneRemain(): Promise<void> {
    if (!this.deps.recordBinding.acceptsLegacy()) return;
    const dataKeys = (await this.deps.store.listDataKeys()).filter((k) => k.purpose === 'data' && k.state === 'active');
    for (const key of dataKeys) {
      if ((await this.deps.store.recordsBehind(key.tenant, key.version, CURRENT_BINDING, '', 1)).length > 0) return;
    }
    this.deps.recordBinding.refuseLegacy();
    await this.deps.audit.append(
      auditEntry(this.deps, SYSTEM_CALLER, {
        action: 'keys:reencrypt',
        outcome: 'allow',
        reason: 'no record of binding 1 remains: such records are refused from now on',
      }),
    );
  }

  /** Takes the job's lease when it can and works on it; again after losing the lease, until it is finished or stopped. */
  private async run(job: JobRecord): Promise<void> {
    while (await this.acquire(job.id)) {
      try {
        // Each run scans again from the first record behind, so its count of unopenable records starts over.
        await this.deps.store.updateJob(job.id, { failed: 0 });
        if ((await this.work(job)) !== 'lease-lost') return;
      } finally {
        if (this.stopping) await this.deps.store.releaseJob(job.id, this.owner).catch(() => undefined);
      }
    }
  }

  /** Waits for the job's lease (another instance may hold it); false once stopped or the job is no longer running. */
  private async acquire(id: string): Promise<boolean> {
    const { leaseMs } = this.deps.reencrypt;
    for (;;) {
      if (this.stopping) return false;
      try {
        if (await this.deps.store.leaseJob(id, this.owner, leaseMs)) return true;
        if ((await this.deps.store.job(id))?.state !== 'running') return false;
      } catch (err) {
        this.deps.logger.warn({ job: id, error: errorForLog(err) }, 'could not check a re-encryption job lease');
      }
      await this.pauseUnlessStopped(leaseMs / 2);
    }
  }

  private pauseUnlessStopped(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakeOnStop.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeOnStop.add(wake);
    });
  }

  private async work(job: JobRecord): Promise<'finished' | 'stopped' | 'lease-lost'> {
    try {
      for (const tenant of job.tenants) {
        const outcome = await this.reencryptTenant(job, tenant);
        if (outcome !== 'done') return outcome;
      }
      const final = await this.deps.store.job(job.id);
      const now = this.deps.now();
      await this.deps.store.updateJob(job.id, {
        state: 'completed',
        total: (final?.done ?? 0) + (final?.failed ?? 0),
        updatedAt: now,
        finishedAt: now,
      });
      await this.deps.audit.append(
        auditEntry(this.deps, SYSTEM_CALLER, {
          action: 'keys:reencrypt',
          outcome: final?.failed ? 'partial' : 'allow',
          reason: `job ${job.id} completed: ${final?.done ?? 0} re-encrypted, ${final?.failed ?? 0} could not be opened`,
        }),
      );
      await this.refuseLegacyOnceNoneRemain();
      return 'finished';
    } catch (err) {
      this.deps.logger.error({ job: job.id, error: errorForLog(err) }, 're-encryption job failed');
      const now = this.deps.now();
      try {
        await this.deps.store.updateJob(job.id, { state: 'failed', error: errorSummary(err), updatedAt: now, finishedAt: now });
      } catch (updateErr) {
        // The job stays `running` in the database and resumes at the next start.
        this.deps.logger.error({ job: job.id, error: errorForLog(updateErr) }, 'a failed re-encryption job could not be marked failed');
      }
      return 'finished';
    }
  }

  /**
   * Stops part-way when stopped or when another instance took the lease (the job stays `running`,
   * to be resumed). The lease is renewed before every batch. A batch whose
   * target key stopped being active meanwhile is redone under the new one; a KEK that is briefly
   * unavailable (KMS outage) is waited for, with backoff, instead of failing the job.
   */
  private async reencryptTenant(job: JobRecord, tenant: string): Promise<'done' | 'stopped' | 'lease-lost'> {
    let cursor = '';
    let outages = 0;
    for (;;) {
      if (this.stopping) return 'stopped';
      if (!(await this.deps.store.leaseJob(job.id, this.owner, this.deps.reencrypt.leaseMs))) return 'lease-lost';
      try {
        const active = await this.deps.keys.activeKey(tenant, 'data');
        const batch = await this.deps.store.recordsBehind(tenant, active.version, CURRENT_BINDING, cursor, this.deps.reencrypt.batchSize);
        if (batch.length === 0) return 'done';
        const updates: ReencryptedRecord[] = [];
        let failed = 0;
        for (const record of batch) {
          const update = await this.reencryptOne(record, active);
          if (update) updates.push(update);
          else failed++;
        }
        await this.deps.store.replaceCiphertexts(updates, job.id, failed, this.deps.now());
        cursor = batch[batch.length - 1].token;
        outages = 0;
        await sleep(this.deps.reencrypt.pauseMs);
      } catch (err) {
        if (err instanceof StaleDataKeyError) {
          this.deps.keys.forgetActive(tenant, 'data');
          continue;
        }
        if (!(err instanceof KeyUnavailableError) || ++outages > MAX_OUTAGE_RETRIES) throw err;
        await sleep(Math.min(30_000, 250 * 2 ** outages));
      }
    }
  }

  /**
   * The record sealed under the active key with the current binding, or undefined when its
   * ciphertext cannot be opened. A record of binding 1 gets the preserve option its token shows.
   */
  private async reencryptOne(record: TokenRecord, active: DataKey): Promise<ReencryptedRecord | undefined> {
    const oldKey = await this.deps.keys.keyVersion(record.tenant, 'data', record.keyVersion);
    if (!oldKey) return undefined;
    try {
      const value = open(oldKey, record, recordAad(record));
      const preserve = record.preserve ?? inferredPreserve(record.format, record.token, value.toString('utf8'));
      // A subject-keyed record keeps its binding: its value and subject are opaque inner layers here.
      const binding = Math.max(record.binding, CURRENT_BINDING);
      const upgraded = { ...record, preserve, binding, keyVersion: active.version };
      const sealed = seal(active.key, value, recordAad(upgraded));
      const subject = record.subjectSealed && openSubject(oldKey, record.subjectSealed, record.tenant, record.token, record.keyVersion);
      return {
        token: record.token,
        tenant: record.tenant,
        fromVersion: record.keyVersion,
        fromBinding: record.binding,
        keyVersion: active.version,
        binding,
        preserve,
        ...sealed,
        subjectSealed: subject ? sealSubject(active.key, subject, record.tenant, record.token, active.version) : null,
      };
    } catch (err) {
      if (err instanceof IntegrityError) return undefined;
      throw err;
    }
  }

  private async remaining(tenants: string[]): Promise<number> {
    const counts = await this.deps.store.recordCountsByKey();
    let total = 0;
    for (const tenant of tenants) {
      const active = await this.deps.store.activeDataKey(tenant, 'data');
      for (const [key, n] of counts) {
        const [t, version] = key.split('/');
        if (t === tenant && Number(version) !== active?.version) total += n;
      }
    }
    return total;
  }
}

const MAX_OUTAGE_RETRIES = 8;

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function toJobView(job: JobRecord): JobView {
  const elapsed = Math.max(1, job.updatedAt - job.createdAt) / 1000;
  const rate = job.done / elapsed;
  const left = Math.max(0, job.total - job.done - job.failed);
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    tenants: job.tenants,
    total: job.total,
    done: job.done,
    failed: job.failed,
    ratePerSecond: Math.round(rate),
    etaSeconds: job.state !== 'running' ? 0 : rate > 0 ? Math.ceil(left / rate) : null,
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
    finishedAt: job.finishedAt === null ? null : new Date(job.finishedAt).toISOString(),
    error: job.error,
  };
}
