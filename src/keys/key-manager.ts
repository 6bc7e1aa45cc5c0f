import { EncryptionContext, KeyProvider, KeyUnavailableError } from '../crypto/key-provider';
import type { DataKeyRecord, KeyPurpose } from '../domain/keys';
import { SYSTEM_TENANT } from '../domain/tenants';
import { IntegrityError } from '../crypto/aead';
import { KeyCache, KeyRank } from './key-cache';
import type { PendingAudit } from '../store/vault-store';

/**
 * The few store operations the key manager uses (the vault store provides them); see VaultStore
 * for their contracts. Owning this seam keeps the key manager testable and store-agnostic.
 */
interface DataKeyStore {
  activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined>;
  dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined>;
  /** False when that version already exists (another process won). */
  insertDataKey(record: DataKeyRecord): Promise<boolean>;
  listDataKeys(): Promise<DataKeyRecord[]>;
  /** False (nothing written) when `next.version` exists or the active version is not `expectedActive`. */
  rotateDataKey(next: DataKeyRecord, audit: PendingAudit, expectedActive?: number): Promise<boolean>;
}

export interface DataKey {
  readonly version: number;
  readonly key: Buffer;
  /** How many values this version has encrypted, and when it was created (for automatic rotation). */
  readonly encryptions: number;
  readonly createdAt: number;
}

interface KeyCacheOptions {
  /** How long an unwrapped key stays in memory. */
  ttlMs: number;
  /** How many unwrapped keys are kept at most; old versions are evicted before active keys and the audit key. */
  maxEntries: number;
  /**
   * How long which version is active is believed without asking the store again. A version
   * another process rotated away meanwhile is caught when writing (StaleDataKeyError), and the
   * caller asks again with `forgetActive`.
   */
  activeTtlMs?: number;
}

/**
 * Finds, creates and unwraps per-tenant data keys. Unwrapped keys live only in this bounded,
 * expiring cache; the KEK is asked on a miss, never per request.
 */
export class KeyManager {
  private readonly cache: KeyCache;
  /** Calls made to the KEK provider (generate and unwrap), for metrics and the benchmark. */
  providerCalls = 0;
  private readonly pending = new Map<string, Promise<Buffer>>();
  /** Automatic rotations in flight, per tenant and purpose: concurrent requests share one. */
  private readonly rotations = new Map<string, Promise<{ version: number; previous: number | undefined } | undefined>>();
  private readonly active = new Map<string, { record: DataKeyRecord; expires: number }>();

  constructor(
    private readonly store: DataKeyStore,
    private readonly provider: KeyProvider,
    private readonly options: KeyCacheOptions = { ttlMs: 15 * 60_000, maxEntries: 10_000 },
  ) {
    this.cache = new KeyCache(options, (id) => this.rank(id));
  }

  /** The audit key every request needs ranks highest, then each tenant's active keys, then old versions. */
  private rank(id: string): KeyRank {
    const [tenant, purpose, version] = id.split('\u0000') as [string, KeyPurpose, string];
    if (this.active.get(activeId(tenant, purpose))?.record.version !== Number(version)) return 0;
    return tenant === SYSTEM_TENANT ? 2 : 1;
  }

  /** The active key of a tenant and purpose, created (version 1) on first use. */
  async activeKey(tenant: string, purpose: KeyPurpose): Promise<DataKey> {
    let believed = this.active.get(activeId(tenant, purpose));
    if (!believed || believed.expires <= Date.now()) {
      const existing = await this.store.activeDataKey(tenant, purpose);
      const created = existing ? undefined : await this.createFirstKey(tenant, purpose);
      believed = this.believeActive(existing ?? created!.record);
      if (created?.plaintext) return toDataKey(believed.record, created.plaintext);
    }
    return toDataKey(believed.record, await this.unwrapCached(believed.record));
  }

  /** The active key of a tenant and purpose, or undefined when the tenant has none yet (never creates one). */
  async activeKeyIfAny(tenant: string, purpose: KeyPurpose): Promise<DataKey | undefined> {
    const believed = this.active.get(activeId(tenant, purpose));
    if ((!believed || believed.expires <= Date.now()) && !(await this.store.activeDataKey(tenant, purpose))) return undefined;
    return this.activeKey(tenant, purpose);
  }

  private believeActive(record: DataKeyRecord): { record: DataKeyRecord; expires: number } {
    const believed = { record, expires: Date.now() + (this.options.activeTtlMs ?? 1_000) };
    this.active.set(activeId(record.tenant, record.purpose), believed);
    return believed;
  }

  /** Asks the store again next time: the version believed active was rotated away. */
  forgetActive(tenant: string, purpose: KeyPurpose): void {
    this.active.delete(activeId(tenant, purpose));
  }

  /** Counts encryptions made under a version, so automatic rotation by count needs no store read. */
  countEncryptions(tenant: string, purpose: KeyPurpose, version: number, n: number): void {
    const entry = this.active.get(activeId(tenant, purpose));
    if (entry?.record.version === version) entry.record = { ...entry.record, encryptions: entry.record.encryptions + n };
  }

  /**
   * Makes a new version the active key of (tenant, purpose); the old one becomes decrypt-only.
   * With `expectedActive` (automatic rotation), rotates only if that version is still the active
   * one, and concurrent calls share one rotation (one KMS call). Returns undefined when another
   * request or process rotated first.
   */
  async rotate(
    tenant: string,
    purpose: KeyPurpose,
    audit: PendingAudit,
    expectedActive?: number,
  ): Promise<{ version: number; previous: number | undefined } | undefined> {
    if (expectedActive === undefined) return this.rotateNow(tenant, purpose, audit);
    const id = activeId(tenant, purpose);
    let flight = this.rotations.get(id);
    if (!flight) {
      flight = this.rotateNow(tenant, purpose, audit, expectedActive).finally(() => this.rotations.delete(id));
      this.rotations.set(id, flight);
    }
    return flight;
  }

  private async rotateNow(
    tenant: string,
    purpose: KeyPurpose,
    audit: PendingAudit,
    expectedActive?: number,
  ): Promise<{ version: number; previous: number | undefined } | undefined> {
    const existing = (await this.store.listDataKeys()).filter((k) => k.tenant === tenant && k.purpose === purpose);
    const previous = existing.find((k) => k.state === 'active')?.version;
    if (expectedActive !== undefined && previous !== expectedActive) {
      // Already rotated (by a request that finished just before, or another process): no KMS call.
      this.forgetActive(tenant, purpose);
      return undefined;
    }
    const version = Math.max(0, ...existing.map((k) => k.version)) + 1;
    this.providerCalls++;
    const { plaintext, wrapped } = await this.provider.generateDataKey(context(tenant, purpose, version));
    const record: DataKeyRecord = {
      tenant,
      purpose,
      version,
      state: 'active',
      kekId: wrapped.kekId,
      wrapped: wrapped.blob,
      createdAt: Date.now(),
      encryptions: 0,
    };
    if (!(await this.store.rotateDataKey(record, audit, expectedActive))) {
      this.forgetActive(tenant, purpose);
      return undefined;
    }
    this.believeActive(record);
    this.cache.set(cacheKey(tenant, purpose, version), plaintext);
    return { version, previous };
  }

  /** Forgets an unwrapped key (after it was destroyed). */
  forget(tenant: string, purpose: KeyPurpose, version: number): void {
    this.cache.delete(cacheKey(tenant, purpose, version));
  }

  /** A specific version, for decrypting what it encrypted; undefined when it no longer exists. */
  async keyVersion(tenant: string, purpose: KeyPurpose, version: number): Promise<Buffer | undefined> {
    const cached = this.cache.get(cacheKey(tenant, purpose, version));
    if (cached) return cached;
    const record = await this.store.dataKey(tenant, purpose, version);
    if (!record || !record.wrapped || record.state === 'destroyed') return undefined;
    return this.unwrapCached(record);
  }

  /** Drops every unwrapped key from memory (not zeroed, for the reason given on KeyCache). */
  clear(): void {
    this.cache.clear();
    this.active.clear();
  }

  /** Creates version 1; returns its plaintext too when this call's key won (no unwrap needed). */
  private async createFirstKey(tenant: string, purpose: KeyPurpose): Promise<{ record: DataKeyRecord; plaintext?: Buffer }> {
    this.providerCalls++;
    const { plaintext, wrapped } = await this.provider.generateDataKey(context(tenant, purpose, 1));
    const record: DataKeyRecord = {
      tenant,
      purpose,
      version: 1,
      state: 'active',
      kekId: wrapped.kekId,
      wrapped: wrapped.blob,
      createdAt: Date.now(),
      encryptions: 0,
    };
    if (await this.store.insertDataKey(record)) {
      this.cache.set(cacheKey(tenant, purpose, 1), plaintext);
      return { record, plaintext };
    }
    // Another request or process created it first: use theirs.
    plaintext.fill(0);
    const winner = await this.store.activeDataKey(tenant, purpose);
    if (!winner) throw new KeyUnavailableError(`no active ${purpose} key for tenant after creation`);
    return { record: winner };
  }

  private async unwrapCached(record: DataKeyRecord): Promise<Buffer> {
    const id = cacheKey(record.tenant, record.purpose, record.version);
    const cached = this.cache.get(id);
    if (cached) return cached;
    // Concurrent misses for one key share one unwrap call.
    let inflight = this.pending.get(id);
    if (!inflight) {
      inflight = this.unwrap(record).finally(() => this.pending.delete(id));
      this.pending.set(id, inflight);
    }
    return inflight;
  }

  private async unwrap(record: DataKeyRecord): Promise<Buffer> {
    if (!record.wrapped) throw new KeyUnavailableError(`key version ${record.version} was destroyed`);
    let key: Buffer;
    this.providerCalls++;
    try {
      key = await this.provider.unwrap(
        { kekId: record.kekId, blob: record.wrapped },
        context(record.tenant, record.purpose, record.version),
      );
    } catch (err) {
      if (err instanceof IntegrityError) {
        throw new IntegrityError(
          `cannot unwrap ${record.purpose} key v${record.version}: wrong master key or tampered key record (${err.message})`,
        );
      }
      throw err;
    }
    this.cache.set(cacheKey(record.tenant, record.purpose, record.version), key);
    return key;
  }
}

function toDataKey(record: DataKeyRecord, key: Buffer): DataKey {
  return { version: record.version, key, encryptions: record.encryptions, createdAt: record.createdAt };
}

export function context(tenant: string, purpose: KeyPurpose, version: number): EncryptionContext {
  return { tenant, purpose, version: String(version) };
}

function activeId(tenant: string, purpose: KeyPurpose): string {
  return `${tenant}\u0000${purpose}`;
}

function cacheKey(tenant: string, purpose: KeyPurpose, version: number): string {
  return `${tenant}\u0000${purpose}\u0000${version}`;
}
