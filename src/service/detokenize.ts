import type { DataType, Reveal } from '../domain/types';
import type { DetokenizeRequest, DetokenizeResponse } from '../contract/schemas';
import { ItemErrorCode, ItemErrorReason, VaultError } from '../errors';
import { mayEver, principalCoversTenant } from '../policy/policy';
import type { AuditEntry, StoredRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { revealLevel, revealValue } from './reveal';
import { consentRefuses, subjectHandles } from './subject-consent';
import { ERASED, prefetchSubjectKeys } from './subject-layer';
import { resolveToken } from './token-lookup';
import { distinct } from './tokenize';

type Item = DetokenizeResponse['items'][number];

/**
 * Items opened per event-loop turn. A batch of 1,000 would otherwise hold the loop for the whole
 * batch; between turns other requests (and health probes) are served. Counted in items, not time,
 * so the behaviour is the same on a fast machine and a slow one.
 */
const ITEMS_PER_TURN = 64;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Returns each token's value at the reveal level the policy allows for the stated purpose.
 * Values leave only after the audit row is durable (fail closed). A token of a tenant the caller
 * may not touch is reported as not_found, so tokens cannot be probed across tenants; one naming
 * records in several of the caller's tenants is `ambiguous_token` unless the request names a tenant.
 *
 * Items are built once, in the shape the response declares (its allow-list then checks them
 * without copying), and what the audit row needs is counted as they are.
 */
export async function detokenize(deps: VaultDeps, caller: Caller, request: DetokenizeRequest): Promise<DetokenizeResponse> {
  const policy = deps.policy();
  const purpose = request.purpose ?? null;
  const { tokens } = request;
  const found = await deps.store.findTokens(tokens);
  const records = tokens.map((t) => resolveToken(caller, found.get(t), request.tenant));
  // Only real tokens the caller may see are named in the audit: a "token" that is not one could be
  // a value sent by mistake (a PAN), and must not be written down.
  const visible = distinct(tokens.filter((_, i) => records[i] !== 'not_found'));
  const unknown = records.filter((r) => r === 'not_found').length;
  // The subjects of the records found are named (by handle) whatever the decision.
  const subjects = subjectHandles(records);
  const audit = (fields: Partial<AuditEntry> & Pick<AuditEntry, 'outcome'>) =>
    deps.audit.append(auditEntry(deps, caller, { action: 'detokenize', tokens: visible, purpose, subjects, ...fields }));

  if (!mayEver(policy, caller.principal, 'detokenize')) {
    await audit({ outcome: 'deny', reason: 'no detokenize grant' });
    throw new VaultError('forbidden', 'This caller may not detokenize.');
  }
  if (request.tenant !== undefined && !principalCoversTenant(caller.principal, request.tenant)) {
    // The tenant named is not written down: outside the caller's tenants, it may be anything.
    await audit({ outcome: 'deny', reason: 'tenant not granted' });
    throw new VaultError('forbidden', 'This caller may not touch the tenant named.');
  }

  const now = deps.now();
  const revealFor = revealLevels(deps, caller, request);
  const items = new Array<Item>(tokens.length);
  const tally = new Tally();
  try {
    await prefetchSubjectKeys(
      deps,
      records.filter((r): r is StoredRecord => typeof r === 'object' && revealFor(r) !== undefined),
    );
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      const record = records[i];
      let item: Item;
      if (typeof record !== 'object') item = failed(token, record === 'ambiguous' ? 'ambiguous_token' : 'not_found');
      else {
        const reveal = revealFor(record);
        if (reveal === undefined) item = failed(token, 'forbidden');
        // The subject's consent, read with the record (never cached): a withdrawal counts at once.
        else if (consentRefuses(record, request.purpose)) item = failed(token, 'forbidden', 'consent_not_given');
        else if (record.expiresAt !== null && record.expiresAt <= now) item = failed(token, 'expired');
        // A missing, destroyed or tampered key record fails this item only, like a tampered value or row.
        else item = revealed(token, record, await revealValue(deps, record, reveal));
      }
      items[i] = item;
      tally.add(item, record);
      if ((i + 1) % ITEMS_PER_TURN === 0) await nextTurn();
    }
  } catch (err) {
    // A key that cannot be had (KMS down): the attempt is audited, then refused as a whole.
    await audit({ outcome: 'deny', reason: `refused: ${(err as Error).name}` });
    throw err;
  }

  const tampered = tally.count('integrity_failed');
  // A tampered ciphertext or key record is news for the operators, not only for this caller.
  if (tampered) deps.logger.warn({ requestId: caller.requestId, records: tampered }, 'records failed their integrity check on detokenize');
  await audit(tally.auditFields(unknown));
  return { items };
}

/**
 * The reveal level of a record's tenant and type (see `revealLevel`). A batch holds few tenant and
 * type pairs, so each is decided once per request instead of once per item.
 */
function revealLevels(deps: VaultDeps, caller: Caller, request: DetokenizeRequest): (record: StoredRecord) => Reveal | undefined {
  const decided = new Map<string, Map<DataType, Reveal | undefined>>();
  return (record) => {
    let ofTenant = decided.get(record.tenant);
    if (!ofTenant) decided.set(record.tenant, (ofTenant = new Map()));
    if (!ofTenant.has(record.type)) ofTenant.set(record.type, revealLevel(deps, caller, record, request.purpose, request.reveal));
    return ofTenant.get(record.type);
  };
}

function failed(token: string, code: ItemErrorCode, reason?: ItemErrorReason): Item {
  return { token, error: reason ? { code, reason } : { code } };
}

/** The item of a record whose value `revealValue` gave (built in the response's shape, not spread). */
function revealed(token: string, record: StoredRecord, value: Awaited<ReturnType<typeof revealValue>>): Item {
  if (value === 'integrity_failed' || value === ERASED) return failed(token, value);
  return { token, type: record.type, value: value.value, reveal: value.reveal };
}

/** What the batch's audit row says, counted item by item. */
class Tally {
  /** By reason where one is given (a consent refusal), else by code. */
  private readonly failures = new Map<ItemErrorCode | ItemErrorReason, number>();
  private failed = 0;
  private items = 0;
  private readonly types = new Set<DataType>();
  private readonly tenants = new Set<string>();

  add(item: Item, record: StoredRecord | 'not_found' | 'ambiguous'): void {
    this.items++;
    if (typeof record === 'object') this.tenants.add(record.tenant);
    if ('error' in item) {
      this.failed++;
      const cause = item.error.reason ?? item.error.code;
      this.failures.set(cause, this.count(cause) + 1);
    } else this.types.add(item.type);
  }

  count(cause: ItemErrorCode | ItemErrorReason): number {
    return this.failures.get(cause) ?? 0;
  }

  /** `unknown`: how many tokens named no record the caller may see (they are left out of the row). */
  auditFields(unknown: number): Pick<AuditEntry, 'outcome' | 'tenant' | 'types' | 'reason'> {
    const counts = [...this.failures].map(([code, n]) => `${n} ${code}`).join(', ');
    return {
      outcome: this.failed === 0 ? 'allow' : this.failed === this.items ? 'deny' : 'partial',
      tenant: this.tenants.size === 1 ? [...this.tenants][0] : null,
      types: [...this.types],
      reason: this.failed ? counts + (unknown ? ` (${unknown} unknown tokens not recorded)` : '') : null,
    };
  }
}
