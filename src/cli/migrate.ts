import { migrateVault } from '../app/migrate';

/** `pii-vault migrate`: runs the copy and prints its summary; exit 0 only when every check passed. */
export async function migrate(dataDir: string, to: string, json: boolean): Promise<number> {
  const summary = await migrateVault(dataDir, to);
  if (json) {
    process.stdout.write(JSON.stringify(summary) + '\n');
    return summary.ok ? 0 : 1;
  }
  const tables = Object.entries(summary.tables).map(([table, n]) => `${table} ${n.target}`);
  const { sample, audit } = summary;
  process.stdout.write(
    [
      `copied ${summary.source} into ${summary.target}: ${tables.join(', ')} (rows counted on both sides)`,
      `sample: ${sample.matched} of ${sample.checked} records open to the same value on both sides` +
        (sample.unreadableOnBoth ? `, ${sample.unreadableOnBoth} unreadable on both (destroyed key)` : '') +
        (sample.mismatched ? `, ${sample.mismatched} MISMATCHED` : ''),
      audit.ok
        ? `audit chain intact on the target: ${audit.rows} rows` +
          (audit.archivedThrough ? ` after archived row #${audit.archivedThrough}` : '')
        : `audit chain BROKEN on the target at ${audit.reason}`,
      summary.ok
        ? `The source was not changed. Serve from PostgreSQL with PII_VAULT_DATABASE_URL=${summary.target} (or "database": {"url": …} in config.json).`
        : 'MIGRATION CHECK FAILED: do not serve from the target; drop and recreate it, then migrate again.',
    ].join('\n') + '\n',
  );
  return summary.ok ? 0 : 1;
}
