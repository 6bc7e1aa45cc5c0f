import { Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DATA_TYPES, DataType, REVEAL_LEVELS, Reveal, revealRank } from '../domain/types';
import { oneOf } from '../contract/one-of';

export const ACTIONS = [
  'tokenize',
  'detokenize',
  'read-metadata',
  'delete',
  'subject:export',
  'subject:erase',
  'subject:consent',
  'keys:read',
  'keys:rotate',
  'keys:destroy',
  'audit:read',
  'policy:read',
] as const;
export type Action = (typeof ACTIONS)[number];

/** Actions that concern stored values, so grants name the data types they apply to. */
export const VALUE_ACTIONS: ReadonlySet<Action> = new Set(['tokenize', 'detokenize', 'read-metadata', 'delete']);

/** Actions whose answer shows values, so the reveal level of their grants matters; for others it means nothing. */
export const REVEALING_ACTIONS: ReadonlySet<Action> = new Set(['detokenize']);

/** Actions whose requests state a purpose; a grant bound to purposes gives any other action nothing. */
export const PURPOSE_ACTIONS: ReadonlySet<Action> = new Set(['detokenize']);

const literals = <T extends readonly string[]>(values: T) => oneOf(values);

const GrantSchema = Type.Object(
  {
    actions: Type.Array(literals(ACTIONS), { minItems: 1, description: 'What the grant allows.' }),
    types: Type.Optional(
      Type.Array(literals([...DATA_TYPES, '*'] as const), { minItems: 1, description: 'Data types it applies to; `*` for all.' }),
    ),
    reveal: Type.Optional(literals(REVEAL_LEVELS)),
    purposes: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        minItems: 1,
        description: 'Detokenize only for one of these stated purposes.',
      }),
    ),
    allowNarrowTokens: Type.Optional(
      Type.Boolean({ description: 'On a tokenize grant: allow digit tokens with fewer than 6 random digits (refused otherwise).' }),
    ),
  },
  { additionalProperties: false },
);

const ApiKeySchema = Type.Object(
  {
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 (hex) of the API key; the key itself is never stored.' }),
    createdAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const PrincipalSchema = Type.Object(
  {
    roles: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    tenants: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, description: 'Tenants it may touch; `*` for all.' }),
    apiKeys: Type.Array(ApiKeySchema),
    clientCertificates: Type.Optional(
      Type.Array(
        Type.Object(
          {
            sha256: Type.String({
              pattern: '^[0-9a-f]{64}$',
              description: 'SHA-256 fingerprint (hex) of the DER client certificate (mTLS).',
            }),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

const PolicySchema = Type.Object(
  {
    version: Type.Literal(1),
    // additionalProperties: false makes names outside the pattern an error instead of unvalidated.
    roles: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,63}$' }), Type.Array(GrantSchema), { additionalProperties: false }),
    principals: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,63}$' }), PrincipalSchema, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

export type PolicyDocument = Static<typeof PolicySchema>;
type Grant = Static<typeof GrantSchema>;

export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
  readonly tenants: readonly string[];
}

const checker = TypeCompiler.Compile(PolicySchema);

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Validates a parsed policy document: its shape, and that every role a principal names exists. */
export function validatePolicy(doc: unknown): PolicyDocument {
  const firstError = checker.Errors(doc).First();
  if (firstError) throw new PolicyError(`policy ${firstError.path || '/'}: ${firstError.message}`);
  const policy = doc as PolicyDocument;
  for (const [id, principal] of Object.entries(policy.principals)) {
    for (const role of principal.roles) {
      if (!Object.hasOwn(policy.roles, role)) throw new PolicyError(`policy /principals/${id}: unknown role "${role}"`);
    }
  }
  for (const [role, grants] of Object.entries(policy.roles)) {
    grants.forEach((grant, i) => {
      const needsTypes = grant.actions.some((a) => VALUE_ACTIONS.has(a));
      if (needsTypes && !grant.types) throw new PolicyError(`policy /roles/${role}/${i}: grants on values must list "types"`);
    });
  }
  return policy;
}

export type Decision = { allow: true; reveal: Reveal } | { allow: false; reason: string };

/** The less revealing of two levels. */
export function leastReveal(a: Reveal, b: Reveal): Reveal {
  return revealRank(a) <= revealRank(b) ? a : b;
}

export function principalCoversTenant(principal: Principal, tenant: string): boolean {
  return principal.tenants.includes('*') || principal.tenants.includes(tenant);
}

/**
 * Pure policy evaluation; default deny. Among matching grants the most revealing wins.
 * A grant with `purposes` matches only when the request states one of them.
 */
export function decide(
  policy: PolicyDocument,
  principal: Principal,
  action: Action,
  request: { tenant: string; type?: DataType; purpose?: string },
): Decision {
  if (!principalCoversTenant(principal, request.tenant)) return { allow: false, reason: 'tenant not granted' };
  if (VALUE_ACTIONS.has(action) && request.type === undefined) return { allow: false, reason: 'no data type given' };
  let best: Reveal | undefined;
  let purposeMismatch = false;
  for (const grant of grantsOf(policy, principal)) {
    if (!grant.actions.includes(action)) continue;
    if (VALUE_ACTIONS.has(action) && !(grant.types ?? []).some((t) => t === '*' || t === request.type)) continue;
    if (grant.purposes && !(request.purpose !== undefined && grant.purposes.includes(request.purpose))) {
      purposeMismatch = true;
      continue;
    }
    const reveal = grant.reveal ?? 'redacted';
    if (best === undefined || revealRank(reveal) > revealRank(best)) best = reveal;
  }
  if (best !== undefined) return { allow: true, reveal: best };
  return { allow: false, reason: purposeMismatch ? 'purpose missing or not allowed' : 'no grant' };
}

/** Every purpose some grant requires, sorted: any other purpose (or none) is decided alike. */
export function purposesNamed(policy: PolicyDocument): string[] {
  const named = Object.values(policy.roles).flatMap((grants) => grants.flatMap((g) => g.purposes ?? []));
  return [...new Set(named)].sort();
}

/** Whether a tokenize grant on the type opts in to digit tokens narrower than the safe minimum. */
export function allowsNarrowTokens(policy: PolicyDocument, principal: Principal, request: { tenant: string; type: DataType }): boolean {
  if (!principalCoversTenant(principal, request.tenant)) return false;
  return grantsOf(policy, principal).some(
    (g) => g.allowNarrowTokens === true && g.actions.includes('tokenize') && (g.types ?? []).some((t) => t === '*' || t === request.type),
  );
}

/**
 * Whether the principal may take a vault-wide action that names no tenant, type or purpose (audit:read,
 * policy:read): a grant bound to purposes does not give it, as such a request states none.
 */
export function mayWithoutPurpose(policy: PolicyDocument, principal: Principal, action: Action): boolean {
  return grantsOf(policy, principal).some((g) => g.actions.includes(action) && g.purposes === undefined);
}

/** Whether any grant gives the principal this action at all, on any type or purpose. */
export function mayEver(policy: PolicyDocument, principal: Principal, action: Action): boolean {
  return grantsOf(policy, principal).some((g) => g.actions.includes(action));
}

function grantsOf(policy: PolicyDocument, principal: Principal): Grant[] {
  return principal.roles.flatMap((role) => policy.roles[role] ?? []);
}
