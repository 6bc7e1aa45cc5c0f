import { SqliteStore } from './sqlite-store';
import type { VaultStore } from './vault-store';

export interface StoreSettings {
  /** The SQLite database file (absolute, or relative to the working directory). */
  databaseFile: string;
  /** How long a write waits for another process's lock before failing with StoreUnavailableError. */
  busyTimeoutMs: number;
  /** Told of conditions an operator should know (never values): e.g. deleted data not yet purged. */
  onWarning?: (message: string) => void;
}

/**
 * Opens the vault's store and checks that it is durable: the one place that knows which store
 * the vault runs on (today the embedded SQLite file).
 */
export async function openStore(settings: StoreSettings): Promise<VaultStore> {
  const store = new SqliteStore(settings.databaseFile, settings.busyTimeoutMs);
  try {
    store.requireDurable();
  } catch (err) {
    await store.close();
    throw err;
  }
  if (settings.onWarning) store.onWarning = settings.onWarning;
  return store;
}
