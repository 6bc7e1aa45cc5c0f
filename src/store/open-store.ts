import { existsSync } from 'node:fs';
import { ConfigError, VaultConfig, dataPath } from '../config';
import { PostgresSubjectKeyStore } from './postgres-subject-key-store';
import { SqliteSubjectKeyStore } from './sqlite/sqlite-subject-key-store';
import { SubjectKeyStore } from './subject-key-store';
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

/**
 * The per-subject key store, outside the vault database: the PostgreSQL database of
 * `subjectKeys.databaseUrl` if set, else (SQLite vaults) the file `subjectKeys.path`, opened when
 * per-subject keys are enabled or the file exists (records sealed under them must stay readable
 * after they are disabled). Undefined when neither applies. A PostgreSQL vault that enables them
 * without a database of their own does not start.
 */
export async function openSubjectKeyStore(
  config: VaultConfig,
  onWarning?: (message: string) => void,
): Promise<(SubjectKeyStore & { onWarning: (message: string) => void }) | undefined> {
  const { enabled, databaseUrl, path } = config.subjectKeys;
  let store: (SubjectKeyStore & { onWarning: (message: string) => void }) | undefined;
  const file = dataPath(config, path);
  if (databaseUrl && !config.database.url && existsSync(file)) {
    // Served from the database, the keys in the file would be missing: every value sealed under them would read as erased.
    throw new ConfigError(
      `subject keys are in ${file} but subjectKeys.databaseUrl names a database: move them with \`pii-vault migrate\`, or unset subjectKeys.databaseUrl`,
    );
  }
  if (databaseUrl) {
    const { poolSize, connectTimeoutMs, statementTimeoutMs } = config.database;
    store = await PostgresSubjectKeyStore.open({ url: databaseUrl, poolSize, connectTimeoutMs, statementTimeoutMs });
  } else if (config.database.url) {
    if (enabled.length > 0) {
      throw new ConfigError(
        'subjectKeys.enabled is set on a PostgreSQL vault but subjectKeys.databaseUrl (PII_VAULT_SUBJECT_KEYS_DATABASE_URL) is not: per-subject keys need a database of their own, apart from database.url',
      );
    }
  } else {
    if (file === dataPath(config, config.databaseFile)) {
      throw new ConfigError('subjectKeys.path must not be the vault database file: the keys must live outside it');
    }
    if (enabled.length > 0 || existsSync(file)) store = new SqliteSubjectKeyStore(file, config.databaseBusyTimeoutMs);
  }
  if (store && onWarning) store.onWarning = onWarning;
  return store;
}
