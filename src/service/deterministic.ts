import { timingSafeEqual } from 'node:crypto';
import { inferredPreserve } from '../domain/token-formats';
import type { DataType, Preserve, TokenFormat } from '../domain/types';
import { InternalError, VaultError } from '../errors';
import type { Metadata, ResolveExisting, TokenRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { openRecord } from './open-record';
import { ERASED } from './subject-layer';
import { canonicalMetadata } from './record-crypto';

/**
 * What a deterministic request asks for. Its identity is (tenant, type, value, format, preserve):
 * a record with another format or preserve is another token. Its attributes (ttl, subject,
 * metadata) must match the record's, or the request is refused rather than silently ignored.
 */
export interface DeterministicRequest {
  type: DataType;
  normalized: string;
  format: TokenFormat;
  preserve: Preserve;
  fingerprint: Buffer;
  ttlSeconds: number | undefined;
  subjectHash: Buffer | null;
  metadata: Metadata | null;
}

/** A stored record whose value was opened under its binding and found to be the request's. */
interface Vetted {
  record: TokenRecord;
  preserve: Preserve;
  /** Its subject key was destroyed: it gives way to a new record, like an expired one. */
  erased?: boolean;
}

/**
 * A record seen inside the write transaction is not the one vetted before it (written or changed
 * meanwhile); the request is vetted and stored again.
 */
export class ExistingRecordChangedError extends InternalError {
  constructor() {
    super('internal_error', 'a deterministic record changed after it was verified');
    this.name = 'ExistingRecordChangedError';
  }
}

/**
 * Opens every stored record with one of the requests' fingerprints. The store finds them by
 * fingerprint without decrypting, so a record is handed back only once its value opened under its
 * binding and equals the request's value: a fingerprint moved onto another row, or any bound
 * column edited, is refused (audited) instead of returning another value's token.
 */
export async function vetExisting(
  deps: VaultDeps,
  caller: Caller,
  tenant: string,
  requests: ReadonlyArray<DeterministicRequest | undefined>,
): Promise<Map<string, Vetted>> {
  const wanted = requests.filter((r): r is DeterministicRequest => r !== undefined);
  const vetted = new Map<string, Vetted>();
  if (wanted.length === 0) return vetted;
  for (const record of await deps.store.findDeterministic(tenant, wanted)) {
    const request = wanted.find((r) => r.type === record.type && record.fingerprint?.equals(r.fingerprint))!;
    const value = await openRecord(deps, record);
    if (value === ERASED) {
      // Crypto-shredded (its subject was erased): it can be neither vetted nor returned, only replaced.
      vetted.set(record.token, { record, preserve: record.preserve ?? request.preserve, erased: true });
      continue;
    }
    if (!value || !sameBytes(value, Buffer.from(request.normalized, 'utf8'))) {
      await deps.audit.append(
        auditEntry(deps, caller, {
          action: 'tokenize',
          outcome: 'deny',
          tenant,
          types: [record.type],
          tokens: [record.token],
          reason: 'integrity_failed: a stored deterministic record failed its integrity check',
        }),
      );
      throw new VaultError('integrity_failed');
    }
    vetted.set(record.token, { record, preserve: record.preserve ?? inferredPreserve(record.format, record.token, request.normalized) });
  }
  return vetted;
}

/**
 * Decides, inside the write transaction, what a deterministic item gets: the live record of its
 * identity (if its attributes match), a new record in place of an expired one, or a new record.
 * Every record it is shown must be one vetted before or one written by this batch.
 */
export function resolveExisting(
  requests: ReadonlyArray<DeterministicRequest | undefined>,
  vetted: ReadonlyMap<string, Vetted>,
  written: ReadonlyMap<string, TokenRecord>,
  now: number,
): ResolveExisting {
  return (index, existing) => {
    const request = requests[index]!;
    const matches: Vetted[] = [];
    for (const record of existing) {
      const known = trusted(record, vetted, written);
      if (!known) throw new ExistingRecordChangedError();
      if (record.format === request.format && known.preserve === request.preserve) matches.push(known);
    }
    if (matches.length === 0) return 'insert';
    const live = matches.find((m) => !m.erased && (m.record.expiresAt === null || m.record.expiresAt > now))?.record;
    if (!live) return { replace: matches.map((m) => m.record.token) };
    const field = conflictingAttribute(request, live);
    if (field) {
      throw new VaultError(
        'deterministic_conflict',
        `items[${index}]: the deterministic token of this value has a different ${field}; send the same ${field} (omitted means none), or tokenize without deterministic.`,
        { index, field },
      );
    }
    return { reuse: live.token };
  };
}

function trusted(record: TokenRecord, vetted: ReadonlyMap<string, Vetted>, written: ReadonlyMap<string, TokenRecord>): Vetted | undefined {
  const before = vetted.get(record.token);
  if (before && sameRecord(before.record, record)) return before;
  const ours = written.get(record.token);
  if (ours && ours.preserve && sameRecord(ours, record)) return { record: ours, preserve: ours.preserve };
  return undefined;
}

/** The attribute of the request that differs from the record's, if any. A ttl compares as a lifetime. */
function conflictingAttribute(request: DeterministicRequest, record: TokenRecord): 'ttlSeconds' | 'subject' | 'metadata' | undefined {
  const ttl = record.expiresAt === null ? undefined : (record.expiresAt - record.createdAt) / 1000;
  if (ttl !== request.ttlSeconds) return 'ttlSeconds';
  if (!sameOptionalBytes(record.subjectHash, request.subjectHash)) return 'subject';
  if (canonicalMetadata(record.metadata) !== canonicalMetadata(request.metadata)) return 'metadata';
  return undefined;
}

/** Every stored column equal (metadata compared in its canonical form). */
export function sameRecord(a: TokenRecord, b: TokenRecord): boolean {
  return (
    a.token === b.token &&
    a.tenant === b.tenant &&
    a.type === b.type &&
    a.format === b.format &&
    a.preserve === b.preserve &&
    a.binding === b.binding &&
    a.keyVersion === b.keyVersion &&
    a.createdAt === b.createdAt &&
    a.expiresAt === b.expiresAt &&
    a.nonce.equals(b.nonce) &&
    a.tag.equals(b.tag) &&
    a.ciphertext.equals(b.ciphertext) &&
    sameOptionalBytes(a.fingerprint, b.fingerprint) &&
    sameOptionalBytes(a.subjectHash, b.subjectHash) &&
    sameOptionalBytes(a.subjectSealed, b.subjectSealed) &&
    canonicalMetadata(a.metadata) === canonicalMetadata(b.metadata)
  );
}

function sameOptionalBytes(a: Buffer | null, b: Buffer | null): boolean {
  return a === null || b === null ? a === b : a.equals(b);
}

/** Constant time for equal lengths: the stored value is compared with the caller's without a timing signal. */
function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
