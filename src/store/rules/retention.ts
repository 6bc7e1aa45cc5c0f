import { Plan, ask } from '../transaction-plan';
import type { ExpiredCount, PendingAudit } from '../vault-store';
import { appendAuditPlan } from './audit';

/**
 * Deletes up to `limit` expired records with their record counts and one audit row of counts only
 * (see VaultStore.purgeExpired); nothing expired writes nothing.
 */
export function* purgeExpiredPlan(now: number, limit: number, audit: PendingAudit): Plan<ExpiredCount[]> {
  const deleted = yield* ask('deleteExpiredRecords', now, limit);
  if (deleted.length === 0) return [];
  const perVersion = new Map<string, { tenant: string; version: number; records: number }>();
  const perType = new Map<string, ExpiredCount>();
  for (const { tenant, type, keyVersion } of deleted) {
    const version = perVersion.get(`${tenant}/${keyVersion}`) ?? { tenant, version: keyVersion, records: 0 };
    version.records++;
    perVersion.set(`${tenant}/${keyVersion}`, version);
    const count = perType.get(`${tenant}/${type}`) ?? { tenant, type, records: 0 };
    count.records++;
    perType.set(`${tenant}/${type}`, count);
  }
  for (const { tenant, version, records } of perVersion.values()) yield* ask('addRecordCount', tenant, version, -records);
  const counts = inCountOrder([...perType.values()]);
  audit.entry.types = [...new Set(counts.map((c) => c.type))].sort();
  audit.entry.tokens = [];
  audit.entry.subjects = [];
  audit.entry.reason = `purged ${deleted.length} expired records: ${describeExpiredCounts(counts)}`;
  yield* appendAuditPlan(audit);
  return counts;
}

/** `tenant/type n, …`: how an audit reason and the CLI name the counts. */
export function describeExpiredCounts(counts: readonly ExpiredCount[]): string {
  return counts.map((c) => `${c.tenant}/${c.type} ${c.records}`).join(', ');
}

/** Counts in (tenant, type) order by code unit, the same on every store whatever its collation. */
export function inCountOrder(counts: ExpiredCount[]): ExpiredCount[] {
  const key = (c: ExpiredCount) => `${c.tenant}\u0000${c.type}`;
  return counts.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
