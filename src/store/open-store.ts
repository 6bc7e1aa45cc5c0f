import { ConfigError, VaultConfig, dataPath } from '../config';
import { PostgresStore } from './postgres-store';
import { SqliteStore } from './sqlite-store';
import { VaultStore } from './vault-store';

/** A store as the vault opens it: the seam, plus where it reports warnings (never values). */
export type OpenedStore = VaultStore & { onWarning: (message: string) => void };

/**
 * The one place that picks the store: PostgreSQL when `database.url` (or PII_VAULT_DATABASE_URL)
 * is set, else the embedded SQLite file of the data dir. Either is ready for use when returned
 * (schema migrated, durability checked).
 */
export async function openStore(config: VaultConfig): Promise<OpenedStore> {
  const { url, poolSize, connectTimeoutMs, statementTimeoutMs, idleInTransactionTimeoutMs } = config.database;
  if (url) return PostgresStore.open({ url, poolSize, connectTimeoutMs, statementTimeoutMs, idleInTransactionTimeoutMs });
  const store = new SqliteStore(dataPath(config, config.databaseFile), config.databaseBusyTimeoutMs);
  try {
    checkDurability(store);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** An acknowledged token must be on disk: WAL with synchronous=FULL, or the vault does not start. */
function checkDurability(store: SqliteStore): void {
  const { journalMode, synchronous } = store.settings();
  if (journalMode !== 'wal' || synchronous !== 2) {
    throw new ConfigError(
      `the database is in journal_mode=${journalMode}, synchronous=${synchronous}; the vault needs WAL with synchronous=FULL (2)`,
    );
  }
}
