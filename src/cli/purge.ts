import { loadConfig } from '../config';
import { openVault } from '../app/open-vault';
import type { Caller } from '../service/context';
import type { PurgeReport } from '../service/purge';
import { describeExpiredCounts } from '../store/rules/retention';

/** Whose audit rows a CLI purge files (as init and audit archive do). */
const CLI_CALLER: Caller = { principal: { id: 'cli', roles: [], tenants: ['*'] }, requestId: 'cli' };

/** `pii-vault purge`: deletes every expired record now (or, with --dry-run, counts them) and prints the counts. */
export async function purge(dataDir: string, dryRun: boolean, json: boolean): Promise<number> {
  const opened = await openVault(loadConfig(dataDir));
  try {
    const report = await opened.vault.purgeExpired(CLI_CALLER, { dryRun });
    process.stdout.write((json ? JSON.stringify(report) : describe(report)) + '\n');
    return 0;
  } finally {
    await opened.close();
  }
}

function describe({ dryRun, purged, counts }: PurgeReport): string {
  const detail = describeExpiredCounts(counts);
  if (dryRun) return `dry run: ${purged} expired records would be purged${purged ? ` (${detail})` : ''}; nothing was deleted`;
  return `purged ${purged} expired records${purged ? ` (${detail})` : ''}`;
}
