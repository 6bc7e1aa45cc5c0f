import { VaultConfig, dataPath } from '../config';
import { PostgresStore } from './postgres-store';
import { SqliteStore } from './sqlite-store';
import { VaultStore } from './vault-store';

/** A store as the vault opens it: the seam, plus where it reports warnings (never values). */
export type OpenedStore = VaultStore & { onWarning: (message: string) => void };

/**
 * The one place that picks the store: PostgreSQL when `database.url` (or PII_VAULT_DATABASE_URL)
 * is set, else the embedded SQLite file of the data dir. Either is ready for use when returned
 * (schema migrated, durability checked). `onWarning` is told of conditions an operator should
 * know (never values), e.g. deleted data not yet purged from the WAL.
 */
export async function openStore(config: VaultConfig, onWarning?: (message: string) => void): Promise<OpenedStore> {
  const { url, poolSize, connectTimeoutMs, statementTimeoutMs, idleInTransactionTimeoutMs } = config.database;
  const store: OpenedStore = url
    ? await PostgresStore.open({ url, poolSize, connectTimeoutMs, statementTimeoutMs, idleInTransactionTimeoutMs })
    : openSqlite(config);
  if (onWarning) store.onWarning = onWarning;
  return store;
}

function openSqlite(config: VaultConfig): SqliteStore {
  const store = new SqliteStore(dataPath(config, config.databaseFile), config.databaseBusyTimeoutMs);
  try {
    store.requireDurable();
  } catch (err) {
    void store.close();
    throw err;
  }
  return store;
}
