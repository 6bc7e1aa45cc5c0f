import type { DetokenizeRequest, DetokenizeResponse } from '../contract/schemas';
import { ItemErrorCode, ItemErrorReason, VaultError } from '../errors';
import { mayEver, principalCoversTenant } from '../policy/policy';
import type { AuditEntry, StoredRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { revealLevel, revealValue } from './reveal';
import { consentRefuses, subjectHandles } from './subject-consent';
import { ERASED } from './subject-layer';
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
 */
export async function detokenize(deps: VaultDeps, caller: Caller, request: DetokenizeRequest): Promise<DetokenizeResponse> {
  const policy = deps.policy();
  const purpose = request.purpose ?? null;
  const found = await deps.store.findTokens(request.tokens);
  const resolved = new Map(request.tokens.map((t) => [t, resolveToken(caller, found.get(t), request.tenant)]));
  // Only real tokens the caller may see are named in the audit: a "token" that is not one could be
  // a value sent by mistake (a PAN), and must not be written down.
  const known = request.tokens.filter((t) => resolved.get(t) !== 'not_found');
  const visible = distinct(known);
  const unknown = request.tokens.length - known.length;
  // The subjects of the records found are named (by handle) whatever the decision.
  const subjects = subjectHandles(visible.map((t) => resolved.get(t)!));
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
  const items: Item[] = [];
  try {
    for (const token of request.tokens) {
      items.push(await detokenizeOne(deps, caller, token, resolved.get(token)!, request, now));
      if (items.length % ITEMS_PER_TURN === 0) await nextTurn();
    }
  } catch (err) {
    // A key that cannot be had (KMS down): the attempt is audited, then refused as a whole.
    await audit({ outcome: 'deny', reason: `refused: ${(err as Error).name}` });
    throw err;
  }

  const failures = items.filter((i): i is Extract<Item, { error: unknown }> => 'error' in i);
  const tenants = distinct(
    visible.flatMap((t) => {
      const record = resolved.get(t);
      return typeof record === 'object' ? [record.tenant] : [];
    }),
  );
  const counts = summarise(failures.map((f) => f.error.reason ?? f.error.code));
  const tampered = failures.filter((f) => f.error.code === 'integrity_failed').length;
  // A tampered ciphertext or key record is news for the operators, not only for this caller.
  if (tampered) deps.logger.warn({ requestId: caller.requestId, records: tampered }, 'records failed their integrity check on detokenize');
  await audit({
    outcome: failures.length === 0 ? 'allow' : failures.length === items.length ? 'deny' : 'partial',
    tenant: tenants.length === 1 ? tenants[0] : null,
    types: distinct(items.flatMap((i) => ('type' in i ? [i.type] : []))),
    reason: failures.length ? counts + (unknown ? ` (${unknown} unknown tokens not recorded)` : '') : null,
  });
  return { items };
}

async function detokenizeOne(
  deps: VaultDeps,
  caller: Caller,
  token: string,
  record: StoredRecord | 'not_found' | 'ambiguous',
  request: DetokenizeRequest,
  now: number,
): Promise<Item> {
  const fail = (code: ItemErrorCode, reason?: ItemErrorReason): Item => ({ token, error: reason ? { code, reason } : { code } });
  if (record === 'not_found') return fail('not_found');
  if (record === 'ambiguous') return fail('ambiguous_token');
  const reveal = revealLevel(deps, caller, record, request.purpose, request.reveal);
  if (reveal === undefined) return fail('forbidden');
  // The subject's consent, read with the record (never cached): a withdrawal counts at once.
  if (consentRefuses(record, request.purpose)) return fail('forbidden', 'consent_not_given');
  if (record.expiresAt !== null && record.expiresAt <= now) return fail('expired');

  // A missing, destroyed or tampered key record fails this item only, like a tampered value or row.
  const shown = await revealValue(deps, record, reveal);
  if (shown === 'integrity_failed') return fail('integrity_failed');
  if (shown === ERASED) return fail('erased');
  return { token, type: record.type, ...shown };
}

function summarise(codes: string[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
  return [...counts].map(([code, n]) => `${n} ${code}`).join(', ');
}
