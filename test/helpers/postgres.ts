import { Client } from 'pg';
import { PostgresStore, PostgresStoreOptions } from '../../src/store/postgres-store';
import { createScratchDatabase } from '../../scripts/scratch-database';

/**
 * The PostgreSQL the tests use to create their own databases (one per suite, dropped afterwards).
 * Point it elsewhere with PII_VAULT_TEST_DATABASE_URL; the role needs CREATEDB.
 */
export const ADMIN_URL = process.env.PII_VAULT_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

let reachable: Promise<string | undefined> | undefined;

/** Undefined when the server answers, else why not. */
function probe(): Promise<string | undefined> {
  reachable ??= (async () => {
    const client = new Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return undefined;
    } catch (err) {
      return (err as Error).message;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return reachable;
}

/**
 * For a suite's `before`: returns when PostgreSQL is reachable. Without it, the suite fails under CI
 * (CI=true: the PostgreSQL tests must never be skipped there) and is skipped, loudly, elsewhere.
 */
export async function requirePostgres(context: Mocha.Context): Promise<void> {
  const problem = await probe();
  if (!problem) return;
  if (process.env.CI) throw new Error(`PostgreSQL is required in CI and is not reachable at ${ADMIN_URL}: ${problem}`);
  process.stderr.write(
    `\n  *** SKIPPING PostgreSQL tests: ${ADMIN_URL} is not reachable (${problem}).\n` +
      '  *** Set PII_VAULT_TEST_DATABASE_URL to a PostgreSQL role that may CREATE DATABASE to run them.\n\n',
  );
  context.skip();
}

/** A fresh, empty database for one test run; `drop` removes it (and ends its sessions). */
export function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  return createScratchDatabase(ADMIN_URL, 'pii_vault_test');
}

/** Store options for tests: small timeouts so that an outage is noticed quickly. */
export function storeOptions(url: string, overrides: Partial<PostgresStoreOptions> = {}): PostgresStoreOptions {
  return { url, poolSize: 5, connectTimeoutMs: 2_000, statementTimeoutMs: 5_000, idleInTransactionTimeoutMs: 10_000, ...overrides };
}

export function openTestStore(url: string, overrides: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  return PostgresStore.open(storeOptions(url, overrides));
}

/** Runs a statement on the test database directly (inspection, or planting state). */
export async function sql<R = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as R[];
  } finally {
    await client.end();
  }
}
