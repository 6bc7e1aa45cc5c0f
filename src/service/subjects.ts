import type {
  AccessLogEntry,
  AccessLogRequest,
  ConsentRequest,
  ConsentResponse,
  EraseResponse,
  ExportedRecord,
  SubjectRequest,
} from '../contract/schemas';
import { DEFAULT_TENANT } from '../domain/tenants';
import { VaultError } from '../errors';
import { Action, decide, principalCoversTenant } from '../policy/policy';
import type { AuditRow, StoredRecord, SubjectRow } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { subjectHash } from './record-crypto';
import { revealLevel, revealValue } from './reveal';
import { ERASED, destroySubjectKey } from './subject-layer';
import { StreamedDocument, paged } from './streamed-document';

/** Records per store read of an export, audit rows per read of an access log. */
const SUBJECT_PAGE = 500;

interface SubjectRef {
  tenant: string;
  /** The keyed HMAC the store knows the subject by; the id itself goes no further than here. */
  hash: Buffer;
}

/**
 * The caller may `action` on subjects of the tenant; a refusal is audited (without the tenant when
 * the caller does not cover it: it may be anything) before it is reported. Then the subject's HMAC.
 */
async function authorisedSubject(
  deps: VaultDeps,
  caller: Caller,
  action: Action,
  auditAction: string,
  request: SubjectRequest,
): Promise<SubjectRef> {
  const tenant = request.tenant ?? DEFAULT_TENANT;
  const decision = decide(deps.policy(), caller.principal, action, { tenant });
  if (!decision.allow) {
    const covered = principalCoversTenant(caller.principal, tenant);
    await deps.audit.append(
      auditEntry(deps, caller, { action: auditAction, outcome: 'deny', tenant: covered ? tenant : null, reason: decision.reason }),
    );
    throw new VaultError('forbidden', `This caller may not ${action} in this tenant.`);
  }
  // Only consent records a subject; the others look, and a look must not create the tenant's key.
  const key =
    action === 'subject:consent' ? await deps.keys.activeKey(tenant, 'fingerprint') : await deps.keys.activeKeyIfAny(tenant, 'fingerprint');
  return { tenant, hash: key ? subjectHash(key.key, request.subject) : NOTHING_STORED };
}

/**
 * Stands for a subject of a tenant without a fingerprint key: no record, subject row or subject key
 * can have been stored there (each needs that key), so the store finds nothing under it.
 */
const NOTHING_STORED = Buffer.alloc(32);

/**
 * A read of the subject's data (export or access log, both under the subject:export action),
 * audited by the subject's handle before anything is read (fail closed); its row, if any.
 */
async function auditedSubjectRead(
  deps: VaultDeps,
  caller: Caller,
  auditAction: 'subject:export' | 'subject:access-log',
  request: SubjectRequest,
): Promise<{ subject: SubjectRef; row: SubjectRow | undefined }> {
  const subject = await authorisedSubject(deps, caller, 'subject:export', auditAction, request);
  const row = await deps.store.subject(subject.tenant, subject.hash);
  await deps.audit.append(
    auditEntry(deps, caller, {
      action: auditAction,
      outcome: 'allow',
      tenant: subject.tenant,
      subjects: row ? [row.handle.toString('hex')] : [],
    }),
  );
  return { subject, row };
}

/**
 * Every record of the subject with its value at the caller's detokenize reveal level (no purpose
 * is stated, so purpose-bound grants give nothing), streamed page by page. The export is audited
 * before the first value is read (fail closed).
 */
export async function exportSubject(deps: VaultDeps, caller: Caller, request: SubjectRequest): Promise<StreamedDocument> {
  const { subject, row } = await auditedSubjectRead(deps, caller, 'subject:export', request);
  const records = paged(
    (after: string) => deps.store.subjectRecords(subject.tenant, subject.hash, after, SUBJECT_PAGE),
    (record) => record.token,
    '',
    SUBJECT_PAGE,
  );
  return new StreamedDocument(
    { tenant: subject.tenant, consentedPurposes: row?.purposes ?? null },
    'records',
    exported(deps, caller, records),
  );
}

async function* exported(deps: VaultDeps, caller: Caller, records: AsyncIterable<StoredRecord>): AsyncIterable<ExportedRecord> {
  for await (const record of records) {
    const reveal = revealLevel(deps, caller, record) ?? 'redacted';
    const shown = await revealValue(deps, record, reveal);
    yield {
      token: record.token,
      type: record.type,
      format: record.format,
      createdAt: new Date(record.createdAt).toISOString(),
      expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt).toISOString(),
      metadata: record.metadata,
      ...(shown === 'integrity_failed' || shown === ERASED ? { value: null, reveal: 'redacted', error: { code: shown } } : shown),
    };
  }
}

/**
 * Every stored audit row that names the subject (by handle, or by HMAC for rows written before
 * handles), found through the audit_subjects index and each re-checked, within [from, to),
 * streamed page by page. The right of access covers who received the data: subject:export.
 */
export async function subjectAccessLog(deps: VaultDeps, caller: Caller, request: AccessLogRequest): Promise<StreamedDocument> {
  const window = timeWindow(request);
  const { subject, row } = await auditedSubjectRead(deps, caller, 'subject:access-log', request);
  const names = row ? new Set([row.handle.toString('hex'), subject.hash.toString('hex')]) : new Set<string>();
  const rows = row
    ? paged(
        (after: number) => deps.store.auditRowsOfSubject(row.handle, after, SUBJECT_PAGE),
        (r) => r.seq,
        0,
        SUBJECT_PAGE,
      )
    : emptyRows();
  // A row of a request that touched several tenants (its tenant is null) lists the types of every item and a reason that
  // counts them all: a caller not covering every tenant sees that the decision named the subject, not the other tenants' part.
  const showsWhole = (r: AuditRow) => r.tenant === subject.tenant || caller.principal.tenants.includes('*');
  return new StreamedDocument({ tenant: subject.tenant }, 'entries', accessLogEntries(rows, names, window, showsWhole));
}

async function* emptyRows(): AsyncIterable<AuditRow> {}

async function* accessLogEntries(
  rows: AsyncIterable<AuditRow>,
  names: Set<string>,
  window: TimeWindow,
  showsWhole: (row: AuditRow) => boolean,
): AsyncIterable<AccessLogEntry> {
  for await (const row of rows) {
    if (!row.subjects.some((s) => names.has(s))) continue;
    const ts = Date.parse(row.ts);
    if (ts < window.from || ts >= window.to) continue;
    const { seq, principal, action, purpose, outcome, requestId } = row;
    const [types, reason] = showsWhole(row) ? [row.types, row.reason] : [[], null];
    yield { seq, ts: row.ts, principal, action, types, purpose, outcome, reason, requestId };
  }
}

interface TimeWindow {
  from: number;
  to: number;
}

function timeWindow(request: AccessLogRequest): TimeWindow {
  const at = (field: 'from' | 'to', fallback: number) => {
    const text = request[field];
    if (text === undefined) return fallback;
    const ms = Date.parse(text);
    if (Number.isNaN(ms) || !isCalendarDate(text))
      throw new VaultError('invalid_request', `body/${field}: not a valid timestamp`, { path: `/${field}` });
    return ms;
  };
  const window = { from: at('from', -Infinity), to: at('to', Infinity) };
  if (window.from > window.to) throw new VaultError('invalid_request', 'body/from: must not be after `to`', { path: '/from' });
  return window;
}

/** Its YYYY-MM-DD names a real day (Date.parse reads 2021-02-29 as 1 March). */
function isCalendarDate(timestamp: string): boolean {
  const [year, month, day] = timestamp.slice(0, 10).split('-').map(Number);
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Erases a data subject: every record, its subject row (the only link from its handle to it) and
 * its audit index entries, in one transaction audited with counts only. Audit rows that named the
 * handle stay in the chain, unlinkable. The one entry point for erasure (HTTP, CLI, and whatever
 * else must go with a subject, such as per-subject keys).
 */
export async function eraseSubject(deps: VaultDeps, caller: Caller, request: SubjectRequest): Promise<EraseResponse> {
  const subject = await authorisedSubject(deps, caller, 'subject:erase', 'subject:erase', request);
  // The key first: records left by a failure after it open to nothing, in the database and in its backups.
  await destroySubjectKey(deps, caller, subject.tenant, subject.hash);
  const entry = auditEntry(deps, caller, { action: 'subject:erase', outcome: 'allow', tenant: subject.tenant });
  const erased = await deps.store.eraseSubject(subject.tenant, subject.hash, { entry, sealer: await deps.audit.sealer() });
  // A tokenize running alongside may have created the key after the look above, and its records were
  // just erased: that key goes too (a record it seals after the erasure answers `erased`).
  await destroySubjectKey(deps, caller, subject.tenant, subject.hash);
  return { tenant: subject.tenant, erased };
}

/** Grants and withdraws consented purposes; effective at once, on every instance (read on every detokenize). */
export async function changeConsent(deps: VaultDeps, caller: Caller, request: ConsentRequest): Promise<ConsentResponse> {
  const grant = request.grant ?? [];
  const withdraw = request.withdraw ?? [];
  if (grant.length + withdraw.length === 0) {
    throw new VaultError('invalid_request', 'body: give purposes to `grant` or `withdraw`.', { path: '/grant' });
  }
  const both = grant.find((p) => withdraw.includes(p));
  if (both !== undefined) {
    throw new VaultError('invalid_request', 'body/withdraw: a purpose cannot be granted and withdrawn at once.', { path: '/withdraw' });
  }
  const subject = await authorisedSubject(deps, caller, 'subject:consent', 'subject:consent', request);
  const entry = auditEntry(deps, caller, {
    action: 'subject:consent',
    outcome: 'allow',
    tenant: subject.tenant,
    reason: [grant.length ? `granted ${grant.join(', ')}` : '', withdraw.length ? `withdrew ${withdraw.join(', ')}` : '']
      .filter(Boolean)
      .join('; '),
  });
  const row = await deps.store.changeConsent(subject.tenant, subject.hash, { grant, withdraw }, deps.now(), {
    entry,
    sealer: await deps.audit.sealer(),
  });
  return { tenant: subject.tenant, consentedPurposes: row.purposes };
}
