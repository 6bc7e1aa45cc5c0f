import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  ACTIONS,
  VALUE_ACTIONS,
  type Action,
  type Decision,
  type PolicyDocument,
  PolicyError,
  type Principal,
  decide,
  leastReveal,
  mayEver,
  principalCoversTenant,
  validatePolicy,
} from '../../src/policy/policy';
import { authenticate, bearerToken, generateApiKey, hashApiKey } from '../../src/policy/authenticator';
import { STARTER_PRINCIPALS, loadPolicyFile, starterPolicy } from '../../src/policy/policy-file';
import { DATA_TYPES, type DataType, type Reveal } from '../../src/domain/types';
import { caught } from '../helpers/caught';

// ---------------------------------------------------------------- helpers

type StarterPrincipal = (typeof STARTER_PRINCIPALS)[number];

function starter(): { policy: PolicyDocument; keys: Record<StarterPrincipal, string> } {
  const keys = {} as Record<StarterPrincipal, string>;
  const hashes = {} as Record<StarterPrincipal, string>;
  for (const p of STARTER_PRINCIPALS) {
    keys[p] = generateApiKey();
    hashes[p] = hashApiKey(keys[p]);
  }
  return { policy: starterPolicy(hashes), keys };
}

function principalOf(policy: PolicyDocument, id: string): Principal {
  const p = policy.principals[id];
  return { id, roles: p.roles, tenants: p.tenants };
}

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

function expectPolicyError(doc: unknown, pattern?: RegExp): PolicyError {
  const err = caught(() => validatePolicy(doc));
  expect(err).to.be.instanceOf(PolicyError);
  if (pattern) expect((err as Error).message).to.match(pattern);
  return err as PolicyError;
}

const HASH = 'a'.repeat(64);

// ---------------------------------------------------------------- validatePolicy

describe('policy / validatePolicy', () => {
  it('accepts the starter policy and returns it', () => {
    const { policy } = starter();
    expect(validatePolicy(policy)).to.deep.equal(policy);
    // Also after a JSON round trip (what is actually loaded from disk).
    expect(() => validatePolicy(clone(policy))).not.to.throw();
  });

  it('accepts a minimal policy with no roles and no principals', () => {
    expect(() => validatePolicy({ version: 1, roles: {}, principals: {} })).not.to.throw();
  });

  it('rejects an unknown action', () => {
    const doc = clone(starter().policy) as unknown as { roles: Record<string, { actions: string[] }[]> };
    doc.roles.billing[0].actions.push('decrypt');
    expectPolicyError(doc, /\/roles\/billing/);
  });

  it('rejects an unknown data type and an unknown reveal level', () => {
    const a = clone(starter().policy) as unknown as { roles: Record<string, { types: string[] }[]> };
    a.roles.billing[0].types = ['card'];
    expectPolicyError(a);
    const b = clone(starter().policy) as unknown as { roles: Record<string, { reveal: string }[]> };
    b.roles.gateway[0].reveal = 'full';
    expectPolicyError(b);
  });

  it('rejects a principal that references an unknown role, naming the principal and the role', () => {
    const doc = clone(starter().policy);
    doc.principals.support.roles = ['support', 'admin'];
    expectPolicyError(doc, /\/principals\/support: unknown role "admin"/);
  });

  it('rejects a role name inherited from Object.prototype as unknown', () => {
    const doc = clone(starter().policy);
    doc.principals.support.roles = ['constructor'];
    expectPolicyError(doc, /unknown role "constructor"/);
  });

  it('rejects extra fields at every level', () => {
    const top = clone(starter().policy) as unknown as Record<string, unknown>;
    top.admin = true;
    expectPolicyError(top);

    const grant = clone(starter().policy) as unknown as { roles: Record<string, Record<string, unknown>[]> };
    grant.roles.support[0].tenants = ['*'];
    expectPolicyError(grant);

    const principal = clone(starter().policy) as unknown as { principals: Record<string, Record<string, unknown>> };
    principal.principals.billing.superuser = true;
    expectPolicyError(principal);

    const apiKey = clone(starter().policy) as unknown as { principals: Record<string, { apiKeys: Record<string, unknown>[] }> };
    apiKey.principals.billing.apiKeys[0].key = 'pvk_plaintext';
    expectPolicyError(apiKey);
  });

  it('rejects an API key hash that is not 64 lower-case hex digits', () => {
    for (const sha256 of ['a'.repeat(63), 'a'.repeat(65), 'A'.repeat(64), 'g'.repeat(64), '', 'pvk_' + 'a'.repeat(60)]) {
      const doc = clone(starter().policy);
      doc.principals.billing.apiKeys[0].sha256 = sha256;
      expectPolicyError(doc);
    }
  });

  it('rejects a grant of value actions that does not list types', () => {
    for (const action of VALUE_ACTIONS) {
      const doc = { version: 1, roles: { r: [{ actions: [action] }] }, principals: {} };
      expectPolicyError(doc, /\/roles\/r\/0: grants on values must list "types"/);
    }
    // Mixed: a value action among type-less ones still needs types.
    expectPolicyError({ version: 1, roles: { r: [{ actions: ['audit:read', 'delete'] }] }, principals: {} }, /must list "types"/);
  });

  it('accepts type-less grants of actions that do not concern values', () => {
    for (const action of ACTIONS.filter((a) => !VALUE_ACTIONS.has(a))) {
      expect(() => validatePolicy({ version: 1, roles: { r: [{ actions: [action] }] }, principals: {} }), action).not.to.throw();
    }
  });

  it('rejects any version other than 1', () => {
    for (const version of [2, 0, '1', undefined]) {
      const doc = clone(starter().policy) as unknown as Record<string, unknown>;
      doc.version = version;
      expectPolicyError(doc);
    }
  });

  it('rejects empty actions, types, roles, tenants or purposes lists', () => {
    const cases: Array<(d: PolicyDocument) => void> = [
      (d) => (d.roles.billing[0].actions = []),
      (d) => (d.roles.billing[0].types = []),
      (d) => (d.roles.gateway[0].purposes = []),
      (d) => (d.principals.billing.roles = []),
      (d) => (d.principals.billing.tenants = []),
    ];
    for (const mutate of cases) {
      const doc = clone(starter().policy);
      mutate(doc);
      expectPolicyError(doc);
    }
  });

  it('rejects badly named roles and principals', () => {
    const a = clone(starter().policy) as unknown as { roles: Record<string, unknown> };
    a.roles['Bad Role'] = [];
    expectPolicyError(a);
    const b = clone(starter().policy) as unknown as { principals: Record<string, unknown> };
    b.principals['Ops'] = clone(starter().policy).principals.billing;
    expectPolicyError(b);
  });

  it('validates the content of every role and principal, whatever its name', () => {
    expectPolicyError({
      version: 1,
      roles: { 'R R': [{ actions: ['detokenize'], types: ['pan'], reveal: 'plain', purposes: 'charge' }] },
      principals: {},
    });
    expectPolicyError({
      version: 1,
      roles: { r: [] },
      principals: { 'Evil Principal': { roles: ['r'], tenants: '*', apiKeys: [{ sha256: 'zz' }] } },
    });
  });

  it('rejects things that are not a policy object', () => {
    for (const doc of [null, undefined, 1, 'policy', [], {}]) expectPolicyError(doc);
  });
});

// ---------------------------------------------------------------- decide

interface Expected {
  allow: boolean;
  reveal?: Reveal;
  reason?: string;
}

/** The type-less actions the starter policy gives security. */
const SECURITY_TYPELESS = [
  'audit:read',
  'keys:read',
  'keys:rotate',
  'keys:destroy',
  'policy:read',
  'subject:export',
  'subject:erase',
  'subject:consent',
] as const;

/** The starter policy, spelled out independently of its source. */
function expectedStarter(principal: StarterPrincipal, action: Action, type: DataType, purpose: string | undefined): Expected {
  const allow = (reveal: Reveal): Expected => ({ allow: true, reveal });
  const deny = (reason = 'no grant'): Expected => ({ allow: false, reason });
  switch (principal) {
    case 'billing':
      return ['tokenize', 'read-metadata', 'delete', 'subject:consent'].includes(action) ? allow('redacted') : deny();
    case 'gateway':
      if (action === 'detokenize' && type === 'pan') return purpose === 'charge' ? allow('plain') : deny('purpose missing or not allowed');
      return deny();
    case 'support':
      if (action === 'detokenize') return allow('masked');
      if (action === 'read-metadata') return allow('redacted');
      return deny();
    case 'security':
      if ([...SECURITY_TYPELESS, 'read-metadata'].includes(action)) return allow('redacted');
      return deny();
  }
}

function asExpected(d: Decision): Expected {
  return d.allow ? { allow: true, reveal: d.reveal } : { allow: false, reason: d.reason };
}

describe('policy / decide', () => {
  const { policy } = starter();
  const PURPOSES = [undefined, 'charge', 'refund'] as const;

  it('the starter policy: every principal × action × type × purpose decides exactly as documented', () => {
    let checked = 0;
    let allowed = 0;
    for (const principal of STARTER_PRINCIPALS) {
      for (const action of ACTIONS) {
        for (const type of DATA_TYPES) {
          for (const purpose of PURPOSES) {
            const got = asExpected(decide(policy, principalOf(policy, principal), action, { tenant: 'default', type, purpose }));
            const want = expectedStarter(principal, action, type, purpose);
            expect(got, `${principal} ${action} ${type} ${purpose}`).to.deep.equal(want);
            checked++;
            if (got.allow) allowed++;
          }
        }
      }
    }
    expect(checked).to.equal(4 * ACTIONS.length * DATA_TYPES.length * 3);
    // billing 4 actions, gateway 1 cell, support 2 actions, security 9 actions; over all types and purposes.
    expect(allowed).to.equal((4 + 2 + 9) * DATA_TYPES.length * 3 + 1);
  });

  it('billing may tokenize every type but never detokenize any', () => {
    const billing = principalOf(policy, 'billing');
    for (const type of DATA_TYPES) {
      expect(decide(policy, billing, 'tokenize', { tenant: 'default', type })).to.deep.equal({ allow: true, reveal: 'redacted' });
      for (const purpose of PURPOSES) {
        expect(decide(policy, billing, 'detokenize', { tenant: 'default', type, purpose }).allow).to.equal(false);
      }
    }
  });

  it('the gateway sees pan in plain only for purpose charge', () => {
    const gateway = principalOf(policy, 'gateway');
    expect(decide(policy, gateway, 'detokenize', { tenant: 'default', type: 'pan', purpose: 'charge' })).to.deep.equal({
      allow: true,
      reveal: 'plain',
    });
    for (const purpose of [undefined, 'refund', 'Charge', 'charge ', '']) {
      const d = decide(policy, gateway, 'detokenize', { tenant: 'default', type: 'pan', purpose });
      expect(d.allow, String(purpose)).to.equal(false);
      expect(!d.allow && d.reason).to.match(/purpose/);
    }
    for (const type of DATA_TYPES.filter((t) => t !== 'pan')) {
      expect(decide(policy, gateway, 'detokenize', { tenant: 'default', type, purpose: 'charge' })).to.deep.equal({
        allow: false,
        reason: 'no grant',
      });
    }
  });

  it('security has the type-less actions audit:read, keys:*, policy:read and subject:* (decided with no type) and nothing on values but metadata', () => {
    const security = principalOf(policy, 'security');
    for (const action of SECURITY_TYPELESS) {
      expect(decide(policy, security, action, { tenant: 'default' })).to.deep.equal({ allow: true, reveal: 'redacted' });
    }
    for (const type of DATA_TYPES) {
      expect(decide(policy, security, 'detokenize', { tenant: 'default', type }).allow).to.equal(false);
    }
  });

  it("no starter principal gets a type-less action other than security's audit:read, keys:*, policy:read and subject:*, and billing's subject:consent", () => {
    for (const principal of STARTER_PRINCIPALS) {
      for (const action of ACTIONS.filter((a) => !VALUE_ACTIONS.has(a))) {
        const d = decide(policy, principalOf(policy, principal), action, { tenant: 'default' });
        const want =
          (principal === 'security' && (SECURITY_TYPELESS as readonly string[]).includes(action)) ||
          (principal === 'billing' && action === 'subject:consent');
        expect(d.allow, `${principal} ${action}`).to.equal(want);
      }
    }
  });

  it('a tenant the principal does not cover is denied with reason "tenant not granted", whatever else matches', () => {
    // security covers every tenant ("*"); the other three only `default`.
    for (const principal of STARTER_PRINCIPALS.filter((p) => p !== 'security')) {
      for (const action of ACTIONS) {
        for (const tenant of ['other', 'Default', '', '*']) {
          const d = decide(policy, principalOf(policy, principal), action, { tenant, type: 'pan', purpose: 'charge' });
          expect(d, `${principal} ${action} ${tenant}`).to.deep.equal({ allow: false, reason: 'tenant not granted' });
        }
      }
    }
  });

  it('a principal with tenants ["*"] covers every tenant', () => {
    const p: Principal = { id: 'ops', roles: ['support'], tenants: ['*'] };
    for (const tenant of ['default', 'other', 'x']) {
      expect(decide(policy, p, 'detokenize', { tenant, type: 'email' })).to.deep.equal({ allow: true, reveal: 'masked' });
      expect(principalCoversTenant(p, tenant)).to.equal(true);
    }
    const q: Principal = { id: 'q', roles: ['support'], tenants: ['a', 'b'] };
    expect(principalCoversTenant(q, 'a')).to.equal(true);
    expect(principalCoversTenant(q, 'b')).to.equal(true);
    expect(principalCoversTenant(q, 'c')).to.equal(false);
  });

  it('the most revealing matching grant wins, whatever the order of grants and roles', () => {
    const grants = [
      { actions: ['detokenize' as const], types: ['*' as const], reveal: 'redacted' as const },
      { actions: ['detokenize' as const], types: ['email' as const], reveal: 'plain' as const },
      { actions: ['detokenize' as const], types: ['email' as const, 'pan' as const], reveal: 'masked' as const },
    ];
    for (const order of [grants, [...grants].reverse(), [grants[1], grants[0], grants[2]]]) {
      const doc = validatePolicy({ version: 1, roles: { r: order }, principals: {} });
      const p: Principal = { id: 'p', roles: ['r'], tenants: ['t'] };
      expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'email' })).to.deep.equal({ allow: true, reveal: 'plain' });
      expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan' })).to.deep.equal({ allow: true, reveal: 'masked' });
      expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'ssn' })).to.deep.equal({ allow: true, reveal: 'redacted' });
    }
    // Across roles too.
    const doc = validatePolicy({
      version: 1,
      roles: {
        low: [{ actions: ['detokenize'], types: ['*'], reveal: 'masked' }],
        high: [{ actions: ['detokenize'], types: ['pan'], reveal: 'plain' }],
      },
      principals: {},
    });
    for (const roles of [
      ['low', 'high'],
      ['high', 'low'],
    ]) {
      const p: Principal = { id: 'p', roles, tenants: ['t'] };
      expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan' })).to.deep.equal({ allow: true, reveal: 'plain' });
      expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'ssn' })).to.deep.equal({ allow: true, reveal: 'masked' });
    }
  });

  it('a purpose-bound grant does not block a matching grant without purposes, and only it reveals more', () => {
    const doc = validatePolicy({
      version: 1,
      roles: {
        r: [
          { actions: ['detokenize'], types: ['pan'], reveal: 'plain', purposes: ['charge', 'refund'] },
          { actions: ['detokenize'], types: ['pan'], reveal: 'masked' },
        ],
      },
      principals: {},
    });
    const p: Principal = { id: 'p', roles: ['r'], tenants: ['t'] };
    expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan', purpose: 'refund' })).to.deep.equal({ allow: true, reveal: 'plain' });
    expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan', purpose: 'charge' })).to.deep.equal({ allow: true, reveal: 'plain' });
    expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan', purpose: 'fraud' })).to.deep.equal({ allow: true, reveal: 'masked' });
    expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan' })).to.deep.equal({ allow: true, reveal: 'masked' });
  });

  it('a generalized grant is granted as such, loses to masked and beats redacted', () => {
    const doc = validatePolicy({
      version: 1,
      roles: {
        analytics: [{ actions: ['detokenize'], types: ['*'], reveal: 'generalized' }],
        support: [{ actions: ['detokenize'], types: ['pan'], reveal: 'masked' }],
        audit: [{ actions: ['detokenize'], types: ['*'], reveal: 'redacted' }],
      },
      principals: {
        a: { roles: ['analytics', 'audit'], tenants: ['t'], apiKeys: [] },
        b: { roles: ['analytics', 'support'], tenants: ['t'], apiKeys: [] },
      },
    });
    const [a, b] = [principalOf(doc, 'a'), principalOf(doc, 'b')];
    expect(decide(doc, a, 'detokenize', { tenant: 't', type: 'dob' })).to.deep.equal({ allow: true, reveal: 'generalized' });
    expect(decide(doc, b, 'detokenize', { tenant: 't', type: 'pan' })).to.deep.equal({ allow: true, reveal: 'masked' });
    expect(decide(doc, b, 'detokenize', { tenant: 't', type: 'email' })).to.deep.equal({ allow: true, reveal: 'generalized' });
  });

  it('a grant without reveal reveals nothing (redacted)', () => {
    const doc = validatePolicy({ version: 1, roles: { r: [{ actions: ['detokenize'], types: ['*'] }] }, principals: {} });
    const p: Principal = { id: 'p', roles: ['r'], tenants: ['t'] };
    expect(decide(doc, p, 'detokenize', { tenant: 't', type: 'pan' })).to.deep.equal({ allow: true, reveal: 'redacted' });
  });

  it('default deny: a principal with a role that has no grants, or an unknown role, is denied everything', () => {
    const doc = validatePolicy({ version: 1, roles: { empty: [] }, principals: {} });
    for (const roles of [['empty'], ['missing'], []]) {
      const p: Principal = { id: 'p', roles, tenants: ['*'] };
      for (const action of ACTIONS) {
        for (const type of [undefined, ...DATA_TYPES]) {
          expect(decide(doc, p, action, { tenant: 't', type }).allow, `${roles} ${action} ${type}`).to.equal(false);
        }
        expect(mayEver(doc, p, action)).to.equal(false);
      }
    }
  });

  it('a grant on specific types does not allow a value action when no type is given', () => {
    const doc = validatePolicy({
      version: 1,
      roles: { r: [{ actions: ['detokenize'], types: ['pan'], reveal: 'plain' }] },
      principals: {},
    });
    const p: Principal = { id: 'p', roles: ['r'], tenants: ['t'] };
    expect(decide(doc, p, 'detokenize', { tenant: 't' }).allow).to.equal(false);
  });

  it('decide is pure: it neither mutates the policy nor depends on earlier calls', () => {
    const { policy: doc } = starter();
    const snapshot = clone(doc);
    const gateway = principalOf(doc, 'gateway');
    const first = decide(doc, gateway, 'detokenize', { tenant: 'default', type: 'pan', purpose: 'charge' });
    decide(doc, gateway, 'detokenize', { tenant: 'default', type: 'pan', purpose: 'refund' });
    expect(decide(doc, gateway, 'detokenize', { tenant: 'default', type: 'pan', purpose: 'charge' })).to.deep.equal(first);
    expect(doc).to.deep.equal(snapshot);
  });
});

describe('policy / leastReveal', () => {
  it('orders redacted < generalized < masked < plain and returns the less revealing of two', () => {
    const order: Reveal[] = ['redacted', 'generalized', 'masked', 'plain'];
    for (let i = 0; i < order.length; i++) {
      for (let j = 0; j < order.length; j++) {
        const want = order[Math.min(i, j)];
        expect(leastReveal(order[i], order[j]), `${order[i]} ${order[j]}`).to.equal(want);
      }
    }
  });
});

describe('policy / mayEver', () => {
  const { policy } = starter();
  it('is true exactly for the actions some grant of the principal lists, whatever type or purpose', () => {
    const want: Record<StarterPrincipal, Action[]> = {
      billing: ['tokenize', 'read-metadata', 'delete', 'subject:consent'],
      gateway: ['detokenize'],
      support: ['detokenize', 'read-metadata'],
      security: [...SECURITY_TYPELESS, 'read-metadata'],
    };
    for (const principal of STARTER_PRINCIPALS) {
      for (const action of ACTIONS) {
        expect(mayEver(policy, principalOf(policy, principal), action), `${principal} ${action}`).to.equal(
          want[principal].includes(action),
        );
      }
    }
  });
});

// ---------------------------------------------------------------- authentication

describe('policy / authenticate', () => {
  const { policy, keys } = starter();

  it('the right key yields its principal with its roles and tenants', () => {
    for (const id of STARTER_PRINCIPALS) {
      expect(authenticate(policy, keys[id])).to.deep.equal({ id, roles: [id], tenants: id === 'security' ? ['*'] : ['default'] });
    }
  });

  it('the key of one principal never yields another principal', () => {
    for (const id of STARTER_PRINCIPALS) {
      const p = authenticate(policy, keys[id]);
      expect(p!.id).to.equal(id);
      for (const other of STARTER_PRINCIPALS.filter((o) => o !== id)) expect(p!.id).not.to.equal(other);
    }
  });

  it('a wrong, altered, empty or missing key yields no principal', () => {
    const k = keys.gateway;
    for (const presented of [
      generateApiKey(),
      k.slice(0, -1),
      k + 'x',
      k.toUpperCase(),
      ` ${k}`,
      hashApiKey(k), // the stored hash is not a credential
      policy.principals.gateway.apiKeys[0].sha256,
      '',
      undefined,
    ]) {
      expect(authenticate(policy, presented), String(presented)).to.equal(undefined);
    }
  });

  it('an empty key is refused even when a principal lists the hash of the empty string', () => {
    const doc = clone(policy);
    doc.principals.billing.apiKeys = [{ sha256: hashApiKey('') }];
    expect(authenticate(doc, '')).to.equal(undefined);
    expect(authenticate(doc, undefined)).to.equal(undefined);
  });

  it('a principal may hold several keys, each of which authenticates it', () => {
    const doc = clone(policy);
    const extra = generateApiKey();
    doc.principals.support.apiKeys.push({ sha256: hashApiKey(extra) });
    expect(authenticate(doc, extra)!.id).to.equal('support');
    expect(authenticate(doc, keys.support)!.id).to.equal('support');
  });

  it('a principal with no keys can never authenticate', () => {
    const doc = clone(policy);
    doc.principals.security.apiKeys = [];
    expect(authenticate(doc, keys.security)).to.equal(undefined);
  });
});

describe('policy / bearerToken', () => {
  it('extracts the token of a Bearer header, case-insensitively and with extra spaces', () => {
    expect(bearerToken('Bearer pvk_abc')).to.equal('pvk_abc');
    expect(bearerToken('bearer pvk_abc')).to.equal('pvk_abc');
    expect(bearerToken('BEARER pvk_abc')).to.equal('pvk_abc');
    expect(bearerToken('BeArEr pvk_abc')).to.equal('pvk_abc');
    expect(bearerToken('Bearer    pvk_abc')).to.equal('pvk_abc');
    expect(bearerToken('  Bearer pvk_abc  ')).to.equal('pvk_abc');
    expect(bearerToken('Bearer\tpvk_abc')).to.equal('pvk_abc');
  });

  it('returns undefined for a missing scheme, another scheme, no token or several tokens', () => {
    for (const header of [
      undefined,
      '',
      'pvk_abc',
      'Bearer',
      'Bearer ',
      'Bearerpvk_abc',
      'Basic dXNlcjpwYXNz',
      'Token pvk_abc',
      'Bearer pvk_abc extra',
      'Bearer a b',
    ]) {
      expect(bearerToken(header), JSON.stringify(header)).to.equal(undefined);
    }
  });

  it('accepts tokens of up to 512 characters and refuses longer ones', () => {
    expect(bearerToken('Bearer ' + 'a'.repeat(512))).to.equal('a'.repeat(512));
    expect(bearerToken('Bearer ' + 'a'.repeat(513))).to.equal(undefined);
    expect(bearerToken('Bearer ' + 'a'.repeat(100_000))).to.equal(undefined);
  });

  it('round-trips a generated key', () => {
    const key = generateApiKey();
    expect(bearerToken(`Bearer ${key}`)).to.equal(key);
  });
});

describe('policy / API keys', () => {
  it('generateApiKey is pvk_ followed by 43 base64url characters (256 bits), never repeating', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const key = generateApiKey();
      expect(key).to.match(/^pvk_[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(key.slice(4), 'base64url').length).to.equal(32);
      seen.add(key);
    }
    expect(seen.size).to.equal(1000);
  });

  it('hashApiKey is the SHA-256 hex digest of the key', () => {
    expect(hashApiKey('')).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hashApiKey('abc')).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const key = generateApiKey();
    expect(hashApiKey(key)).to.equal(createHash('sha256').update(key).digest('hex'));
    expect(hashApiKey(key)).to.match(/^[0-9a-f]{64}$/);
  });
});

// ---------------------------------------------------------------- policy file

describe('policy / loadPolicyFile', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pii-vault-policy-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const expectFileError = (path: string, pattern: RegExp) => {
    const err = caught(() => loadPolicyFile(path));
    expect(err).to.be.instanceOf(PolicyError);
    expect((err as Error).message).to.include(path);
    expect((err as Error).message).to.match(pattern);
  };

  it('loads and validates a starter policy file', () => {
    const { policy } = starter();
    const path = join(dir, 'policy.json');
    writeFileSync(path, JSON.stringify(policy, null, 2));
    expect(loadPolicyFile(path)).to.deep.equal(policy);
  });

  it('a missing file: the error names the file and says it is not found', () => {
    expectFileError(join(dir, 'nope.json'), /not found/);
  });

  it('a file that is not JSON: the error names the file and says so', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{ "version": 1, ');
    expectFileError(path, /not valid JSON/);
  });

  it('a directory instead of a file: the error names the path and the problem', () => {
    const path = join(dir, 'adir');
    mkdirSync(path);
    expectFileError(path, /EISDIR/);
  });

  it('an invalid policy: the error names the file and the offending place', () => {
    const doc = clone(starter().policy);
    doc.principals.support.roles = ['root'];
    const path = join(dir, 'invalid.json');
    writeFileSync(path, JSON.stringify(doc));
    expectFileError(path, /\/principals\/support: unknown role "root"/);

    const path2 = join(dir, 'v2.json');
    writeFileSync(path2, JSON.stringify({ ...starter().policy, version: 2 }));
    expectFileError(path2, /policy \/version/);
  });
});

describe('policy / starterPolicy', () => {
  it('has one principal per starter role, on tenant default (security on every tenant) with exactly the given key hash', () => {
    const hashes = { billing: HASH, gateway: 'b'.repeat(64), support: 'c'.repeat(64), security: 'd'.repeat(64) };
    const doc = starterPolicy(hashes);
    expect(Object.keys(doc.principals).sort()).to.deep.equal([...STARTER_PRINCIPALS].sort());
    for (const id of STARTER_PRINCIPALS) {
      const p = doc.principals[id];
      expect(p.roles).to.deep.equal([id]);
      expect(p.tenants).to.deep.equal(id === 'security' ? ['*'] : ['default']);
      expect(p.apiKeys.map((k) => k.sha256)).to.deep.equal([hashes[id]]);
    }
  });
});
