/**
 * Run as a separate process (`node lock-holder.js DB MARKER HOLD_MS`): opens the vault database as
 * another vault process would, takes its write lock and writes one audit row under it, prints
 * `locked`, and commits only HOLD_MS after the MARKER file appears (the test's sign that its own
 * write is under way).
 */
import { existsSync } from 'node:fs';
import { SqliteStore } from '../../src/store/sqlite-store';
import { auditEntry, testSealer } from './store-fixtures';
import { waitFor } from './wait-for';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const [file, marker, holdMs] = process.argv.slice(2);
  const store = new SqliteStore(file);
  store.db.exec('BEGIN IMMEDIATE');
  await store.appendAudit({ entry: auditEntry(), sealer: testSealer });
  process.stdout.write('locked\n');
  await waitFor(() => existsSync(marker), { what: 'the marker file', everyMs: 5 });
  await sleep(Number(holdMs)); // holding the lock is this helper's job
  store.db.exec('COMMIT');
  await store.close();
  process.stdout.write('released\n');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
