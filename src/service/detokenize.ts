import { IntegrityError, open } from '../crypto/aead';
import { DATA_TYPE_SPECS } from '../domain/data-types';
import type { Reveal } from '../domain/types';
import type { DetokenizeRequest, DetokenizeResponse } from '../contract/schemas';
import { ItemErrorCode, VaultError } from '../errors';
import { decide, leastReveal, mayEver, principalCoversTenant } from '../policy/policy';
import type { TokenRecord } from '../store/vault-store';
import { Caller, VaultDeps, auditEntry } from './context';
import { valueAad } from './record-crypto';
import { distinct } from './tokenize';

type Item = DetokenizeResponse['items'][number];

/**
 * Returns each token's value at the reveal level the policy allows for the stated purpose.
 * Values leave only after the audit row is durable (fail closed). A token of a tenant the caller
 * may not touch is reported as not_found, so tokens cannot be probed across tenants.
 */
export async function detokenize(deps: VaultDeps, caller: Caller, request: DetokenizeRequest): Promise<DetokenizeResponse> {
  const policy = deps.policy();
  const purpose = request.purpose ?? null;
  if (!mayEver(policy, caller.principal, 'detokenize')) {
    await deps.audit.append(
      auditEntry(deps, caller, { action: 'detokenize', outcome: 'deny', tokens: request.tokens, purpose, reason: 'no detokenize grant' }),
    );
    throw new VaultError('forbidden', 'This caller may not detokenize.');
  }

  const records = await deps.store.findTokens(request.tokens);
  const now = deps.now();
  const items: Item[] = [];
  for (const token of request.tokens) {
    const record = records.get(token);
    items.push(await detokenizeOne(deps, caller, token, record, request, now));
  }

  const failures = items.filter((i): i is Extract<Item, { error: unknown }> => 'error' in i);
  const tenants = distinct([...records.values()].filter((r) => principalCoversTenant(caller.principal, r.tenant)).map((r) => r.tenant));
  await deps.audit.append(
    auditEntry(deps, caller, {
      action: 'detokenize',
      outcome: failures.length === 0 ? 'allow' : failures.length === items.length ? 'deny' : 'partial',
      tenant: tenants.length === 1 ? tenants[0] : null,
      types: distinct(items.flatMap((i) => ('type' in i ? [i.type] : []))),
      tokens: request.tokens,
      purpose,
      reason: failures.length ? summarise(failures.map((f) => f.error.code)) : null,
    }),
  );
  return { items };
}

async function detokenizeOne(
  deps: VaultDeps,
  caller: Caller,
  token: string,
  record: TokenRecord | undefined,
  request: DetokenizeRequest,
  now: number,
): Promise<Item> {
  const fail = (code: ItemErrorCode): Item => ({ token, error: { code } });
  if (!record || !principalCoversTenant(caller.principal, record.tenant)) return fail('not_found');
  const decision = decide(deps.policy(), caller.principal, 'detokenize', {
    tenant: record.tenant,
    type: record.type,
    purpose: request.purpose,
  });
  if (!decision.allow) return fail('forbidden');
  if (record.expiresAt !== null && record.expiresAt <= now) return fail('expired');

  const reveal: Reveal = request.reveal ? leastReveal(request.reveal, decision.reveal) : decision.reveal;
  if (reveal === 'redacted') return { token, type: record.type, value: null, reveal };

  const key = await deps.keys.keyVersion(record.tenant, 'data', record.keyVersion);
  if (!key) return fail('integrity_failed');
  let plain: string;
  try {
    plain = open(key, record, valueAad(record.tenant, record.type, record.token, record.keyVersion)).toString('utf8');
  } catch (err) {
    if (err instanceof IntegrityError) return fail('integrity_failed');
    throw err;
  }
  const value = reveal === 'plain' ? plain : DATA_TYPE_SPECS[record.type].mask(plain);
  return { token, type: record.type, value, reveal };
}

function summarise(codes: string[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
  return [...counts].map(([code, n]) => `${n} ${code}`).join(', ');
}
