import type { PolicyPermission, PolicyReport } from '../contract/schemas';
import { DATA_TYPES } from '../domain/types';

/**
 * The policy report as Markdown: a record of processing a data protection officer can read. Rows
 * that differ only in their data type are merged (`pan, ssn` or `all types`); the JSON report
 * keeps one row per data type.
 */
export function policyReportMarkdown(report: PolicyReport): string {
  const lines = [
    '# pii-vault: who may do what with personal data',
    '',
    `Generated ${report.generatedAt} from the policy in force (policy version ${report.policyVersion}).`,
    'Default deny: an action, data type or purpose not listed here is refused.',
    '',
    `Reveal levels, most revealing first: ${report.revealLevels.join(' > ')}. A grant at a level allows that level or a`,
    'lower one, and a caller may always ask for less. `generalized` shows a coarser fact (year of birth, email domain,',
    'card brand…): data minimisation, not anonymisation on its own under the GDPR.',
    '',
    '## Roles',
    ...report.roles.flatMap(({ role, permissions }) => ['', `### Role ${text(role)}`, '', ...permissionTable(permissions)]),
    '',
    '## Principals',
    ...report.principals.flatMap(({ principal, roles, tenants, permissions }) => [
      '',
      `### Principal ${text(principal)}`,
      '',
      `Roles: ${roles.map(text).join(', ')}. Tenants: ${tenants.includes('*') ? 'all' : tenants.map(text).join(', ')}.`,
      '',
      ...permissionTable(permissions),
    ]),
    '',
    '## Retention',
    '',
    '| data type | default lifetime | maximum lifetime |',
    '|---|---|---|',
    ...report.retention.map((r) => `| ${r.type} | ${lifetime(r.defaultTtlSeconds)} | ${lifetime(r.maxTtlSeconds)} |`),
  ];
  return lines.join('\n') + '\n';
}

function permissionTable(permissions: readonly PolicyPermission[]): string[] {
  if (permissions.length === 0) return ['Nothing is allowed.'];
  const merged = new Map<string, { permission: PolicyPermission; types: string[] }>();
  for (const permission of permissions) {
    const key = JSON.stringify([permission.action, permission.reveal, permission.purposes]);
    const row = merged.get(key) ?? { permission, types: [] };
    if (permission.type !== null) row.types.push(permission.type);
    merged.set(key, row);
  }
  return [
    '| action | data types | reveal | purpose stated |',
    '|---|---|---|---|',
    ...[...merged.values()].map(({ permission, types }) => {
      const typesShown = types.length === 0 ? '—' : types.length === DATA_TYPES.length ? 'all types' : types.join(', ');
      const purposes = permission.purposes === null ? 'none required' : `one of: ${permission.purposes.map(text).join(', ')}`;
      return `| ${permission.action} | ${typesShown} | ${permission.reveal ?? '—'} | ${purposes} |`;
    }),
  ];
}

function lifetime(seconds: number | null): string {
  return seconds === null ? 'not limited' : `${seconds} s`;
}

/** Policy names (purposes, tenants) are free text: nothing in them may break the table or format the page. */
function text(value: string): string {
  return value.replace(/\s+/g, ' ').replace(/[\\`*_{}[\]<>#|]/g, '\\$&');
}
