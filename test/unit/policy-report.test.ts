import { expect } from 'chai';
import fc from 'fast-check';
import type { PolicyPermission } from '../../src/contract/schemas';
import { DATA_TYPES, REVEAL_LEVELS, revealRank, type DataType, type Reveal } from '../../src/domain/types';
import {
  ACTIONS,
  decide,
  PURPOSE_ACTIONS,
  REVEALING_ACTIONS,
  VALUE_ACTIONS,
  validatePolicy,
  type Action,
  type PolicyDocument,
  type Principal,
} from '../../src/policy/policy';
import { starterPolicy } from '../../src/policy/policy-file';
import { policyReport } from '../../src/service/policy-report';
import { policyReportMarkdown } from '../../src/service/policy-report-markdown';

const NOW = new Date('2026-11-30T12:00:00Z');
const PURPOSES = ['charge', 'refund', 'fraud|review'] as const;
const ROLES = ['analytics', 'billing', 'ops', 'support'] as const;

// ---------------------------------------------------------------- a random valid policy

const subset = <T>(values: readonly T[], minLength = 1) =>
  fc.uniqueArray(fc.constantFrom(...values), { minLength, maxLength: values.length });

const grant = fc.record(
  {
    actions: subset(ACTIONS),
    types: subset([...DATA_TYPES, '*'] as const),
    reveal: fc.constantFrom(...REVEAL_LEVELS),
    purposes: subset(PURPOSES),
  },
  { requiredKeys: ['actions', 'types'] },
);

const policyDocument: fc.Arbitrary<PolicyDocument> = subset(ROLES).chain((roles) =>
  fc
    .record({
      roles: fc.tuple(...roles.map(() => fc.array(grant, { maxLength: 4 }))),
      principals: fc.uniqueArray(
        fc.record({
          id: fc.constantFrom('p1', 'p2', 'p3', 'p4'),
          roles: subset(roles),
          tenants: fc.oneof(subset(['t1', 't2', 't3']), fc.constant(['*'])),
        }),
        { minLength: 1, maxLength: 4, selector: (p) => p.id },
      ),
    })
    .map(({ roles: grants, principals }) =>
      validatePolicy({
        version: 1,
        roles: Object.fromEntries(roles.map((role, i) => [role, grants[i]])),
        principals: Object.fromEntries(principals.map(({ id, ...p }) => [id, { ...p, apiKeys: [] }])),
      }),
    ),
);

// ---------------------------------------------------------------- reading the report back

/** Whether the report's rows allow the action on the type, for the purpose stated, at the reveal level asked. */
function reportAllows(
  permissions: readonly PolicyPermission[],
  action: Action,
  type: DataType | undefined,
  purpose: string | undefined,
  reveal: Reveal,
): boolean {
  return permissions.some(
    (p) =>
      p.action === action &&
      p.type === (type ?? null) &&
      (p.purposes === null || (purpose !== undefined && p.purposes.includes(purpose))) &&
      (p.reveal === null || revealRank(p.reveal) >= revealRank(reveal)),
  );
}

/** What the vault's own evaluation says to the same question. */
function decideAllows(
  policy: PolicyDocument,
  principal: Principal,
  tenant: string,
  action: Action,
  type: DataType | undefined,
  purpose: string | undefined,
  reveal: Reveal,
): boolean {
  // Only a detokenize states a purpose: any other request is decided without one, whatever it was asked for.
  const stated = PURPOSE_ACTIONS.has(action) ? purpose : undefined;
  const decision = decide(policy, principal, action, { tenant, type, purpose: stated });
  return decision.allow && (!REVEALING_ACTIONS.has(action) || revealRank(decision.reveal) >= revealRank(reveal));
}

/** Every question: action × data type (none for actions on no value) × purpose (each named one, none, an unnamed one) × reveal. */
function* questions(): Generator<[Action, DataType | undefined, string | undefined, Reveal]> {
  for (const action of ACTIONS)
    for (const type of VALUE_ACTIONS.has(action) ? DATA_TYPES : [undefined])
      for (const purpose of [undefined, 'unnamed', ...PURPOSES]) for (const reveal of REVEAL_LEVELS) yield [action, type, purpose, reveal];
}

function expectAgreement(policy: PolicyDocument): void {
  const report = policyReport(policy, {}, NOW);
  expect(report.roles.map((r) => r.role)).to.deep.equal(Object.keys(policy.roles));
  expect(report.principals.map((p) => p.principal)).to.deep.equal(Object.keys(policy.principals));
  for (const { role, permissions } of report.roles) {
    const alone: Principal = { id: role, roles: [role], tenants: ['t1'] };
    for (const [action, type, purpose, reveal] of questions()) {
      const want = decideAllows(policy, alone, 't1', action, type, purpose, reveal);
      expect(reportAllows(permissions, action, type, purpose, reveal), `role ${role}: ${action} ${type} ${purpose} ${reveal}`).to.equal(
        want,
      );
    }
  }
  for (const { principal: id, roles, tenants, permissions } of report.principals) {
    expect({ roles, tenants }).to.deep.equal({ roles: policy.principals[id].roles, tenants: policy.principals[id].tenants });
    const principal: Principal = { id, roles, tenants };
    for (const tenant of tenants.includes('*') ? ['t1', 'elsewhere'] : tenants) {
      for (const [action, type, purpose, reveal] of questions()) {
        const want = decideAllows(policy, principal, tenant, action, type, purpose, reveal);
        expect(
          reportAllows(permissions, action, type, purpose, reveal),
          `principal ${id}@${tenant}: ${action} ${type} ${purpose} ${reveal}`,
        ).to.equal(want);
      }
    }
  }
}

describe('policy report', () => {
  it('answers every role and principal × action × data type × purpose × reveal exactly as the policy evaluation decides (random policies)', () => {
    fc.assert(fc.property(policyDocument, expectAgreement), { numRuns: 60 });
  });

  it('answers the starter policy as the policy evaluation decides', () => {
    expectAgreement(starterPolicy({ billing: 'a'.repeat(64), gateway: 'b'.repeat(64), support: 'c'.repeat(64), security: 'd'.repeat(64) }));
  });

  it('lists a purpose that raises the reveal level in a row of its own, and the level any purpose gets in another', () => {
    const policy = validatePolicy({
      version: 1,
      roles: {
        agent: [
          { actions: ['detokenize'], types: ['pan'], reveal: 'masked' },
          { actions: ['detokenize'], types: ['pan'], reveal: 'plain', purposes: ['refund', 'charge'] },
          { actions: ['detokenize'], types: ['pan'], reveal: 'generalized', purposes: ['stats'] },
          { actions: ['audit:read'], purposes: ['incident'] },
        ],
      },
      principals: {},
    });
    expect(policyReport(policy, {}, NOW).roles[0].permissions).to.deep.equal([
      { action: 'detokenize', type: 'pan', reveal: 'masked', purposes: null },
      { action: 'detokenize', type: 'pan', reveal: 'plain', purposes: ['charge', 'refund'] },
      // No audit:read row: its requests state no purpose, so a grant bound to one never gives it.
    ]);
  });

  it('states retention per data type from the validated retention config, "not limited" where it says nothing', () => {
    const retention = { pan: { defaultTtlSeconds: 86_400, maxTtlSeconds: 31_536_000 } };
    const policy = validatePolicy({ version: 1, roles: {}, principals: {} });
    const report = policyReport(policy, retention, NOW);
    expect(report.retention).to.deep.equal(
      DATA_TYPES.map((type) =>
        type === 'pan'
          ? { type, defaultTtlSeconds: 86_400, maxTtlSeconds: 31_536_000 }
          : { type, defaultTtlSeconds: null, maxTtlSeconds: null },
      ),
    );
    const markdown = policyReportMarkdown(report);
    expect(markdown).to.contain('| pan | 86400 s | 31536000 s |');
    expect(markdown).to.contain('| email | not limited | not limited |');
  });

  it('Markdown: one table per role and principal, policy names escaped so none can break a table, the minimisation caveat stated', () => {
    const policy = validatePolicy({
      version: 1,
      roles: { ops: [{ actions: ['detokenize'], types: ['pan', 'iban'], reveal: 'generalized', purposes: ['fraud|review', '*bold*'] }] },
      principals: { reporting: { roles: ['ops'], tenants: ['eu|west'], apiKeys: [] } },
    });
    const markdown = policyReportMarkdown(policyReport(policy, {}, NOW));
    expect(markdown).to.contain('### Role ops');
    expect(markdown).to.contain('### Principal reporting');
    expect(markdown).to.contain('Tenants: eu\\|west.');
    expect(markdown).to.contain('| detokenize | pan, iban | generalized | one of: \\*bold\\*, fraud\\|review |');
    expect(markdown).to.contain('plain > masked > generalized > redacted');
    expect(markdown).to.contain('not anonymisation');
    // Every row of a table has as many cell separators as its header.
    const separators = (line: string) => line.replace(/\\\|/g, '').split('|').length;
    let header: number | undefined;
    for (const line of markdown.split('\n')) {
      if (!line.startsWith('|')) header = undefined;
      else expect(separators(line), line).to.equal((header ??= separators(line)));
    }
  });
});
