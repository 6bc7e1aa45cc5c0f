import { display, revealsAnything } from '../domain/data-types';
import type { DataType, Reveal } from '../domain/types';
import type { DetokenizeRequest, DetokenizeResponse } from '../contract/schemas';
import { ItemErrorCode, VaultError } from '../errors';
import { decide, leastReveal, mayEver, PolicyDocument, principalCoversTenant } from '../policy/policy';
import type { AuditEntry, TokenRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { openRecord } from './open-record';
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
  const audit = (fields: Partial<AuditEntry> & Pick<AuditEntry, 'outcome'>) =>
    deps.audit.append(auditEntry(deps, caller, { action: 'detokenize', tokens: visible, purpose, ...fields }));

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
  const revealFor = revealLevels(policy, caller, request);
  const items = new Array<Item>(tokens.length);
  const tally = new Tally();
  try {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      const record = records[i];
      let item: Item;
      if (typeof record !== 'object') item = failed(token, record === 'ambiguous' ? 'ambiguous_token' : 'not_found');
      else {
        const reveal = revealFor(record);
        if (reveal === undefined) item = failed(token, 'forbidden');
        else if (record.expiresAt !== null && record.expiresAt <= now) item = failed(token, 'expired');
        else if (!revealsAnything(record.type, reveal)) item = { token, type: record.type, value: null, reveal: 'redacted' };
        // A missing, destroyed or tampered key record fails this item only, like a tampered value or row.
        else item = shown(token, record, reveal, await openRecord(deps, record));
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
 * The reveal level the policy gives the caller on a record's tenant and type, for the request's
 * purpose and asked-for level (undefined: forbidden). A batch holds few tenant and type pairs, so
 * each is decided once, under the policy the request started with.
 */
function revealLevels(policy: PolicyDocument, caller: Caller, request: DetokenizeRequest): (record: TokenRecord) => Reveal | undefined {
  const decided = new Map<string, Map<DataType, Reveal | undefined>>();
  return ({ tenant, type }) => {
    let ofTenant = decided.get(tenant);
    if (!ofTenant) decided.set(tenant, (ofTenant = new Map()));
    if (!ofTenant.has(type)) {
      const decision = decide(policy, caller.principal, 'detokenize', { tenant, type, purpose: request.purpose });
      const level = decision.allow ? (request.reveal ? leastReveal(request.reveal, decision.reveal) : decision.reveal) : undefined;
      ofTenant.set(type, level);
    }
    return ofTenant.get(type);
  };
}

function failed(token: string, code: ItemErrorCode): Item {
  return { token, error: { code } };
}

/**
 * The item of an opened record (undefined: it did not open) at a level that reveals something;
 * the level given is `redacted` when the value has no such form (see `display`).
 */
function shown(token: string, record: TokenRecord, reveal: Reveal, opened: Buffer | undefined): Item {
  if (!opened) return failed(token, 'integrity_failed');
  const { value, reveal: given } = display(record.type, reveal, opened.toString('utf8'));
  return { token, type: record.type, value, reveal: given };
}

/** What the batch's audit row says, counted item by item. */
class Tally {
  private readonly failures = new Map<ItemErrorCode, number>();
  private failed = 0;
  private items = 0;
  private readonly types = new Set<DataType>();
  private readonly tenants = new Set<string>();

  add(item: Item, record: TokenRecord | 'not_found' | 'ambiguous'): void {
    this.items++;
    if (typeof record === 'object') this.tenants.add(record.tenant);
    if ('error' in item) {
      this.failed++;
      this.failures.set(item.error.code, this.count(item.error.code) + 1);
    } else this.types.add(item.type);
  }

  count(code: ItemErrorCode): number {
    return this.failures.get(code) ?? 0;
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
