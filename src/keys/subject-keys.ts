import { hkdfSync, randomBytes } from 'node:crypto';
import { KEY_BYTES, encodeFields, openBlob, sealBlob } from '../crypto/aead';
import { KeyUnavailableError } from '../crypto/key-provider';
import { SubjectKeyRecord, SubjectKeyStore, subjectKeyId } from '../store/subject-key-store';
import { Batcher } from './batcher';
import { KeyCache } from './key-cache';
import type { KeyManager } from './key-manager';

/**
 * Per-subject data keys (crypto-shredding): 32 random bytes per (tenant, subject HMAC), kept in a
 * SubjectKeyStore outside the vault's database, so that destroying one reaches every copy of that
 * database. Stored wrapped (AES-GCM, bound to tenant, subject HMAC and wrapping version) under a key
 * derived (HKDF) from the tenant's fingerprint key — a key the KEK already wraps in the vault
 * database: a KEK rotation or `keys rewrap` covers subject keys without touching them, and a
 * subject key costs no KMS call (one per tenant, for its fingerprint key). Unwrapped keys are held
 * in a bounded, expiring cache; a destroy evicts its key here, other instances keep it until it
 * expires.
 */
export class SubjectKeys {
  private readonly cache: KeyCache;
  /** New keys asked for meanwhile are stored together: one commit (one fsync) for all of them. */
  private readonly creations: Batcher<SubjectKeyRecord, SubjectKeyRecord>;

  constructor(
    private readonly store: SubjectKeyStore,
    private readonly keys: KeyManager,
    cache: { ttlMs: number; maxEntries: number },
  ) {
    this.cache = new KeyCache(cache);
    this.creations = new Batcher((candidates) => this.store.getOrCreate(candidates));
  }

  /** The subject's key, created on first use (of concurrent creators, every one gets the stored key). */
  async getOrCreate(tenant: string, subjectHash: Buffer): Promise<Buffer> {
    const id = subjectKeyId(tenant, subjectHash);
    const cached = this.cache.get(id);
    if (cached) return cached;
    const wrapping = await this.keys.activeKey(tenant, 'fingerprint');
    const key = randomBytes(KEY_BYTES);
    const candidate: SubjectKeyRecord = {
      tenant,
      subjectHash,
      wrapVersion: wrapping.version,
      wrapped: sealBlob(wrappingKey(wrapping.key), key, wrapAad(tenant, subjectHash, wrapping.version)),
      createdAt: Date.now(),
    };
    const stored = await this.creations.add(candidate);
    const result = stored.wrapped.equals(candidate.wrapped) ? key : await this.unwrap(stored);
    this.cache.set(id, result);
    return result;
  }

  /** The subject's key; undefined when it was never created or has been destroyed. */
  async get(tenant: string, subjectHash: Buffer): Promise<Buffer | undefined> {
    const id = subjectKeyId(tenant, subjectHash);
    const cached = this.cache.get(id);
    if (cached) return cached;
    const stored = await this.store.get(tenant, subjectHash);
    if (!stored) return undefined;
    const key = await this.unwrap(stored);
    this.cache.set(id, key);
    return key;
  }

  /**
   * Reads the keys of these subjects that are not in memory in one call to the key store, and
   * keeps those that unwrap, so that `get` of each answers from memory: for a batch of records of
   * many subjects. A key that does not unwrap is left for `get` to report as it does.
   */
  async prefetch(subjects: ReadonlyArray<{ tenant: string; subjectHash: Buffer }>): Promise<void> {
    const missing = new Map<string, { tenant: string; subjectHash: Buffer }>();
    for (const s of subjects) {
      const id = subjectKeyId(s.tenant, s.subjectHash);
      if (!missing.has(id) && !this.cache.get(id)) missing.set(id, s);
    }
    // One alone: `get` reads it just the same.
    if (missing.size < 2) return;
    const stored = await this.store.getMany([...missing.values()]);
    for (const record of stored) {
      if (!record) continue;
      const key = await this.unwrap(record).catch(() => undefined);
      if (key) this.cache.set(subjectKeyId(record.tenant, record.subjectHash), key);
    }
  }

  /** Whether the subject has a stored key (read from the store, not unwrapped: a damaged key can still be destroyed). */
  async has(tenant: string, subjectHash: Buffer): Promise<boolean> {
    return (await this.store.get(tenant, subjectHash)) !== undefined;
  }

  /** Destroys the subject's key (irreversible); false when it had none. */
  async destroy(tenant: string, subjectHash: Buffer): Promise<boolean> {
    this.cache.delete(subjectKeyId(tenant, subjectHash));
    const destroyed = await this.store.destroy(tenant, subjectHash);
    this.cache.delete(subjectKeyId(tenant, subjectHash)); // a read that raced the delete may have cached it again
    return destroyed;
  }

  /** The key store answers. */
  ping(): Promise<void> {
    return this.store.ping();
  }

  clear(): void {
    this.cache.clear();
  }

  /** IntegrityError when the stored row was altered or moved to another subject. */
  private async unwrap(record: SubjectKeyRecord): Promise<Buffer> {
    const fingerprintKey = await this.keys.keyVersion(record.tenant, 'fingerprint', record.wrapVersion);
    if (!fingerprintKey) throw new KeyUnavailableError(`the fingerprint key v${record.wrapVersion} that wraps subject keys is missing`);
    return openBlob(wrappingKey(fingerprintKey), record.wrapped, wrapAad(record.tenant, record.subjectHash, record.wrapVersion));
  }
}

/** Derived once per unwrapped fingerprint key (the key manager's cache keeps handing out the same buffer). */
const wrappingKeys = new WeakMap<Buffer, Buffer>();

/** A key of its own for wrapping, derived from the fingerprint key (which itself only ever MACs). */
function wrappingKey(fingerprintKey: Buffer): Buffer {
  let key = wrappingKeys.get(fingerprintKey);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', fingerprintKey, Buffer.alloc(0), 'pii-vault/subject-key-wrap/v1', KEY_BYTES));
    wrappingKeys.set(fingerprintKey, key);
  }
  return key;
}

function wrapAad(tenant: string, subjectHash: Buffer, wrapVersion: number): Buffer {
  return encodeFields('pii-vault/subject-key/v1', [tenant, subjectHash.toString('hex'), wrapVersion]);
}
