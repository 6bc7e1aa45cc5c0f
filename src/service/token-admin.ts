import { IntegrityError } from '../crypto/aead';
import type { TokenMetadata } from '../contract/schemas';
import { VaultError } from '../errors';
import { Action, decide, principalCoversTenant } from '../policy/policy';
import type { StoredRecord, TokenRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { openRecord } from './open-record';
import { SUBJECT_KEYED_BINDING, openSubject } from './record-crypto';
import { openSubjectKeyedSubject } from './subject-layer';
import { subjectHandles } from './subject-consent';
import { resolveToken } from './token-lookup';

const REDACTED_SUBJECT = '[redacted]';

/**
 * Metadata of one token (never its value). The value is opened (not shown) to check the record's
 * binding, so a row whose expiry, format or other bound column was edited is refused, not described.
 */
export async function readMetadata(deps: VaultDeps, caller: Caller, token: string, tenant?: string): Promise<TokenMetadata> {
  const record = await authorisedRecord(deps, caller, token, 'read-metadata', tenant);
  if (!(await openRecord(deps, record))) {
    await deps.audit.append(
      auditEntry(deps, caller, {
        action: 'read-metadata',
        outcome: 'deny',
        tenant: record.tenant,
        types: [record.type],
        tokens: [token],
        subjects: subjectHandles([record]),
        reason: 'integrity_failed',
      }),
    );
    throw new VaultError('integrity_failed');
  }
  await deps.audit.append(
    auditEntry(deps, caller, {
      action: 'read-metadata',
      outcome: 'allow',
      tenant: record.tenant,
      types: [record.type],
      tokens: [token],
      subjects: subjectHandles([record]),
    }),
  );
  return {
    token: record.token,
    type: record.type,
    tenant: record.tenant,
    format: record.format,
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt).toISOString(),
    keyVersion: record.keyVersion,
    subject: await readSubject(deps, caller, record),
    metadata: record.metadata,
  };
}

/** Deletes one token and its ciphertext; the deletion is audited in the same transaction. */
export async function deleteToken(deps: VaultDeps, caller: Caller, token: string, tenant?: string): Promise<void> {
  const record = await authorisedRecord(deps, caller, token, 'delete', tenant);
  const entry = auditEntry(deps, caller, {
    action: 'delete',
    outcome: 'allow',
    tenant: record.tenant,
    types: [record.type],
    tokens: [token],
    subjects: subjectHandles([record]),
  });
  const deleted = await deps.store.deleteToken(record.tenant, token, { entry, sealer: await deps.audit.sealer() });
  if (!deleted) throw new VaultError('not_found', 'No such token.');
}

/**
 * Loads a token the caller may act on (in `tenant`, when given). Missing tokens and tokens of other
 * tenants look the same (not_found); a token in several of the caller's tenants needs `tenant`
 * (ambiguous_token). Denials are audited before they are reported.
 */
async function authorisedRecord(deps: VaultDeps, caller: Caller, token: string, action: Action, tenant?: string): Promise<StoredRecord> {
  if (tenant !== undefined && !principalCoversTenant(caller.principal, tenant)) {
    await deps.audit.append(auditEntry(deps, caller, { action, outcome: 'deny', reason: 'tenant not granted' }));
    throw new VaultError('forbidden', 'This caller may not touch the tenant named.');
  }
  const resolved = resolveToken(caller, (await deps.store.findTokens([token])).get(token), tenant);
  if (resolved === 'ambiguous') {
    await deps.audit.append(
      auditEntry(deps, caller, { action, outcome: 'deny', tokens: [token], reason: 'ambiguous token: no tenant named' }),
    );
    throw new VaultError('ambiguous_token');
  }
  const record = resolved === 'not_found' ? undefined : resolved;
  const visible = record !== undefined;
  const decision = visible ? decide(deps.policy(), caller.principal, action, { tenant: record.tenant, type: record.type }) : undefined;
  if (!visible || !decision?.allow) {
    await deps.audit.append(
      auditEntry(deps, caller, {
        action,
        outcome: 'deny',
        tenant: visible ? record.tenant : null,
        types: visible ? [record.type] : [],
        // A token that does not exist for this caller is not written down: it may be a value sent by mistake.
        tokens: visible ? [token] : [],
        subjects: visible ? subjectHandles([record]) : [],
        reason: visible && decision && !decision.allow ? decision.reason : 'not found',
      }),
    );
    if (!visible) throw new VaultError('not_found', 'No such token.');
    throw new VaultError('forbidden', `Not allowed to ${action} this token.`);
  }
  return record;
}

/**
 * The subject id is personal data: it is shown to callers that could have supplied it (tokenize)
 * or may export the subject's data; anyone else sees that there is one, not what it is.
 */
async function readSubject(deps: VaultDeps, caller: Caller, record: TokenRecord): Promise<string | null> {
  if (!record.subjectSealed) return null;
  const request = { tenant: record.tenant, type: record.type };
  const policy = deps.policy();
  const mayKnow =
    decide(policy, caller.principal, 'tokenize', request).allow || decide(policy, caller.principal, 'subject:export', request).allow;
  if (!mayKnow) return REDACTED_SUBJECT;
  const key = await deps.keys.keyVersion(record.tenant, 'data', record.keyVersion);
  if (!key) return null;
  try {
    const opened = openSubject(key, record.subjectSealed, record.tenant, record.token, record.keyVersion);
    if (record.binding !== SUBJECT_KEYED_BINDING) return opened.toString('utf8');
    // Shown as no subject once the subject's key is destroyed (erased).
    return (await openSubjectKeyedSubject(deps, record, opened))?.toString('utf8') ?? null;
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    // Shown as no subject; the operators learn of the tampering.
    deps.logger.warn({ tenant: record.tenant, keyVersion: record.keyVersion }, 'a sealed subject id failed its integrity check');
    return null;
  }
}
