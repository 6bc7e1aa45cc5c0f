import { seal } from '../crypto/aead';
import type { ResolveExisting } from '../store/vault-store';
import { pooledRandomBytes } from '../crypto/random-pool';
import { DATA_TYPE_SPECS } from '../domain/data-types';
import { MIN_RANDOM_DIGITS, checkFormat, generateToken, randomDigitCount } from '../domain/token-formats';
import { DataType, DomainValidationError, Preserve, TokenFormat } from '../domain/types';
import type { TokenizeItem, TokenizeRequest, TokenizeResponse } from '../contract/schemas';
import { VaultError } from '../errors';
import { allowsNarrowTokens, decide } from '../policy/policy';
import { StaleDataKeyError, SubjectConsent, TokenRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { DeterministicRequest, ExistingRecordChangedError, resolveExisting, vetExisting } from './deterministic';
import { refuseCardNumbersInMetadata, refuseLoneSurrogates, refuseSensitiveAuthData } from './input-guards';
import { freshDataKey } from './keys';
import { retainedTtlSeconds } from './retention';
import { CURRENT_BINDING, SUBJECT_KEYED_BINDING, fingerprint, innerLayers, recordAad, sealSubject, subjectHash } from './record-crypto';
import { batchSubjectKeys } from './subject-layer';
import { DEFAULT_TENANT } from '../domain/tenants';

interface PreparedItem {
  type: DataType;
  normalized: string;
  format: TokenFormat;
  preserve: Preserve;
  /** The item's lifetime under its type's retention limits (see retainedTtlSeconds); undefined: never expires. */
  ttlSeconds: number | undefined;
  item: TokenizeItem;
}

/** Attempts at vetting and storing when deterministic records change in between (concurrent first requests). */
const MAX_VET_ATTEMPTS = 5;

/**
 * Tokenizes a batch atomically: every item is authorised and validated before anything is
 * stored, and the records are written in one transaction together with their audit row.
 */
export async function tokenize(deps: VaultDeps, caller: Caller, request: TokenizeRequest): Promise<TokenizeResponse> {
  refuseSensitiveAuthData(request);
  refusePurposesWithoutSubject(request);
  const tenant = request.tenant ?? DEFAULT_TENANT;
  await authorise(deps, caller, tenant, request.items);
  await authoriseConsent(deps, caller, tenant, request);
  const prepared = request.items.map((item, index) => prepare(item, index, deps));
  await refuseNarrowTokens(deps, caller, tenant, prepared);

  const needsFingerprintKey = request.items.some((i) => i.deterministic || i.subject !== undefined);
  const fingerprintKey = needsFingerprintKey ? (await deps.keys.activeKey(tenant, 'fingerprint')).key : undefined;
  const deterministic = prepared.map((p) => (p.item.deterministic ? deterministicRequest(p, fingerprintKey!) : undefined));
  for (let attempt = 1, vetAttempt = 1; ;) {
    try {
      const vetted = await vetExisting(deps, caller, tenant, deterministic);
      return await sealAndStore(deps, caller, tenant, prepared, fingerprintKey, request.purposes ?? [], (written, now) =>
        resolveExisting(deterministic, vetted, written, now),
      );
    } catch (err) {
      if (err instanceof ExistingRecordChangedError && vetAttempt++ < MAX_VET_ATTEMPTS) continue;
      if (err instanceof VaultError && err.code === 'deterministic_conflict') {
        // A refusal is a decision like any other (it tells the caller the value is stored): audited, naming no subject.
        const types = distinct(prepared.map((p) => p.type));
        await deps.audit.append(
          auditEntry(deps, caller, { action: 'tokenize', outcome: 'deny', tenant, types, reason: 'deterministic_conflict' }),
        );
      }
      // A rotation committed between reading the active key and storing: seal again under the new one.
      if (!(err instanceof StaleDataKeyError) || attempt++ >= 3) throw err;
      deps.keys.forgetActive(tenant, 'data');
    }
  }
}

function deterministicRequest(p: PreparedItem, fingerprintKey: Buffer): DeterministicRequest {
  return {
    type: p.type,
    normalized: p.normalized,
    format: p.format,
    preserve: p.preserve,
    fingerprint: fingerprint(fingerprintKey, p.type, p.normalized),
    // The lifetime the record would get, defaulted or asked for: a stored record matches either the same way.
    ttlSeconds: p.ttlSeconds,
    subjectHash: p.item.subject !== undefined ? subjectHash(fingerprintKey, p.item.subject) : null,
    metadata: p.item.metadata ?? null,
  };
}

async function sealAndStore(
  deps: VaultDeps,
  caller: Caller,
  tenant: string,
  prepared: PreparedItem[],
  fingerprintKey: Buffer | undefined,
  batchPurposes: readonly string[],
  resolver: (written: ReadonlyMap<string, TokenRecord>, now: number) => ResolveExisting,
): Promise<TokenizeResponse> {
  const dataKey = await freshDataKey(deps, tenant, prepared.length);
  const subjectKeyOf = await batchSubjectKeys(
    deps,
    tenant,
    prepared.map((p) => ({ type: p.type, subject: p.item.subject })),
    fingerprintKey,
  );
  const now = deps.now();
  const written = new Map<string, TokenRecord>();

  const buildRecord = (p: PreparedItem): TokenRecord => {
    const token = generateToken(p.format, p.preserve, p.normalized, pooledRandomBytes);
    const subject = p.item.subject;
    const hash = subject !== undefined ? subjectHash(fingerprintKey!, subject) : null;
    const subjectKey = subjectKeyOf(p.type, hash);
    const plain = innerLayers(subjectKey, { tenant, type: p.type, token, subjectHash: hash }, p.normalized, subject);
    const record: Omit<TokenRecord, 'nonce' | 'ciphertext' | 'tag'> = {
      token,
      tenant,
      type: p.type,
      format: p.format,
      preserve: p.preserve,
      binding: subjectKey ? SUBJECT_KEYED_BINDING : CURRENT_BINDING,
      keyVersion: dataKey.version,
      fingerprint: p.item.deterministic ? fingerprint(fingerprintKey!, p.type, p.normalized) : null,
      subjectHash: hash,
      subjectSealed: plain.subject && sealSubject(dataKey.key, plain.subject, tenant, token, dataKey.version),
      metadata: p.item.metadata ?? null,
      createdAt: now,
      expiresAt: p.ttlSeconds !== undefined ? now + p.ttlSeconds * 1000 : null,
    };
    const sealed = { ...record, ...seal(dataKey.key, plain.value, recordAad(record)) };
    written.set(token, sealed);
    return sealed;
  };
  const records = prepared.map(buildRecord);

  const entry = auditEntry(deps, caller, {
    action: 'tokenize',
    outcome: 'allow',
    tenant,
    types: distinct(prepared.map((p) => p.type)),
    // The store names the subjects by their handles, created in the same transaction.
  });
  const consents: SubjectConsent[] = records.flatMap((r, i) => {
    const purposes = [...batchPurposes, ...(prepared[i].item.purposes ?? [])];
    return r.subjectHash && purposes.length ? [{ subjectHash: r.subjectHash, purposes }] : [];
  });
  const sealer = await deps.audit.sealer();
  const tokens = await deps.store.insertTokens(
    records,
    { entry, sealer },
    { retokenize: (index) => buildRecord(prepared[index]), resolveExisting: resolver(written, now) },
    consents,
  );
  deps.keys.countEncryptions(tenant, 'data', dataKey.version, records.length + records.filter((r) => r.subjectSealed).length);
  return { items: tokens.map((token, i) => ({ token, type: prepared[i].type })) };
}

async function authorise(deps: VaultDeps, caller: Caller, tenant: string, items: TokenizeItem[]): Promise<void> {
  const policy = deps.policy();
  const types = distinct(items.map((i) => i.type));
  for (const type of types) {
    const decision = decide(policy, caller.principal, 'tokenize', { tenant, type });
    if (!decision.allow) {
      await deps.audit.append(auditEntry(deps, caller, { action: 'tokenize', outcome: 'deny', tenant, types, reason: decision.reason }));
      const index = items.findIndex((i) => i.type === type);
      throw new VaultError('forbidden', `Not allowed to tokenize ${type} values for tenant ${tenant}.`, { index });
    }
  }
}

/**
 * Purposes given at tokenize change the subject's consent, as POST /v1/subjects/consent does, so
 * they need the same grant: without it a caller could re-grant a purpose the subject withdrew.
 */
async function authoriseConsent(deps: VaultDeps, caller: Caller, tenant: string, request: TokenizeRequest): Promise<void> {
  if (request.purposes === undefined && !request.items.some((i) => i.purposes !== undefined)) return;
  if (decide(deps.policy(), caller.principal, 'subject:consent', { tenant }).allow) return;
  const types = distinct(request.items.map((i) => i.type));
  const reason = 'no subject:consent grant';
  await deps.audit.append(auditEntry(deps, caller, { action: 'tokenize', outcome: 'deny', tenant, types, reason }));
  throw new VaultError('forbidden', `Recording consent (purposes) needs the subject:consent grant for tenant ${tenant}.`);
}

/**
 * Digit tokens with too few random digits are refused unless a tokenize grant opts in: their space
 * can be exhausted and they say too much of the value (see MIN_RANDOM_DIGITS). The refusal is audited.
 */
async function refuseNarrowTokens(deps: VaultDeps, caller: Caller, tenant: string, prepared: PreparedItem[]): Promise<void> {
  const index = prepared.findIndex(
    (p) =>
      (randomDigitCount(p.format, p.preserve, p.normalized) ?? Infinity) < MIN_RANDOM_DIGITS &&
      !allowsNarrowTokens(deps.policy(), caller.principal, { tenant, type: p.type }),
  );
  if (index < 0) return;
  const { type, format, preserve } = prepared[index];
  await deps.audit.append(
    auditEntry(deps, caller, { action: 'tokenize', outcome: 'deny', tenant, types: [type], reason: 'token format too narrow' }),
  );
  throw new VaultError(
    'forbidden',
    `items[${index}]: format ${format} with preserve ${preserve} leaves this value fewer than ${MIN_RANDOM_DIGITS} random digits; use a wider format, or a policy grant with allowNarrowTokens.`,
    { index, type },
  );
}

/** Consented purposes belong to a subject: an item they apply to must name one. */
function refusePurposesWithoutSubject(request: TokenizeRequest): void {
  const index = request.items.findIndex((item) => item.subject === undefined && (item.purposes ?? request.purposes) !== undefined);
  if (index < 0) return;
  throw new VaultError('invalid_request', `items[${index}]: purposes record a subject's consent, so the item needs a subject.`, {
    index,
    path: `/items/${index}/subject`,
  });
}

function prepare(item: TokenizeItem, index: number, deps: Pick<VaultDeps, 'phoneRegion' | 'retention'>): PreparedItem {
  refuseLoneSurrogates(item, index);
  refuseCardNumbersInMetadata(item, index);
  const ttlSeconds = retainedTtlSeconds(deps.retention, item, index);
  const spec = DATA_TYPE_SPECS[item.type];
  const format = item.format ?? spec.defaultFormat;
  const preserve = item.preserve ?? (format === spec.defaultFormat ? spec.defaultPreserve : 'none');
  try {
    checkFormat(item.type, format, preserve);
    const normalized = spec.normalize(item.value, { phoneRegion: deps.phoneRegion });
    return { type: item.type, normalized, format, preserve, ttlSeconds, item };
  } catch (err) {
    if (err instanceof DomainValidationError) {
      throw new VaultError(err.code, `items[${index}]: ${err.message}`, { index, type: item.type });
    }
    throw err;
  }
}

export function distinct<T>(values: T[]): T[] {
  return [...new Set(values)];
}
