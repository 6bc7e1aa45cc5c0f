import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite-store';
import { createTestDatabase, openTestStore, requirePostgres } from '../helpers/postgres';
import type { VaultStore } from '../../src/store/vault-store';

/** A fresh, empty database opened through a store; `second` is another connection to the same database. */
export interface StoreUnderTest {
  store: VaultStore;
  second?: VaultStore;
  cleanup(): Promise<void>;
}

export interface StoreFactory {
  name: string;
  /** For the suite's `before`: skips (or in CI fails) when the store's server is not there. */
  available?(context: Mocha.Context): Promise<void>;
  open(): Promise<StoreUnderTest>;
}

const sqlite: StoreFactory = {
  name: 'SqliteStore',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'pii-vault-conformance-'));
    const file = join(dir, 'vault.db');
    const store = new SqliteStore(file);
    const second = new SqliteStore(file);
    return {
      store,
      second,
      async cleanup() {
        await store.close();
        await second.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

/** A fresh database per test; two PostgresStore instances on it are two vault instances' pools. */
const postgres: StoreFactory = {
  name: 'PostgresStore',
  available: requirePostgres,
  async open() {
    const database = await createTestDatabase();
    const store = await openTestStore(database.url);
    const second = await openTestStore(database.url);
    return {
      store,
      second,
      async cleanup() {
        await store.close().catch(() => undefined);
        await second.close().catch(() => undefined);
        await database.drop();
      },
    };
  },
};

/** Every store the conformance suite runs against; a new store is one more entry here. */
export const STORE_FACTORIES: StoreFactory[] = [sqlite, postgres];
