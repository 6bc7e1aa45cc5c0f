import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite-store';
import type { VaultStore } from '../../src/store/vault-store';
import { tempDir } from './test-vault';

/** Opens a store that keeps its data under `dir` (a fresh, empty directory). */
export type StoreFactory<S extends VaultStore> = (dir: string) => S | Promise<S>;

/** A SqliteStore in `dir`/vault.db (`busyTimeoutMs` as databaseBusyTimeoutMs). */
export const sqliteStoreIn =
  (busyTimeoutMs?: number): StoreFactory<SqliteStore> =>
  (dir) =>
    new SqliteStore(join(dir, 'vault.db'), busyTimeoutMs);

export interface TempStores<S extends VaultStore> {
  /** A fresh, empty store of its own; closed and removed after the test. */
  open(): Promise<S>;
  /** The current test's temp dir (for files the test writes beside its stores). */
  readonly dir: string;
}

/**
 * Temporary stores for the tests of the enclosing `describe`: registers mocha hooks that give each
 * test a temp dir, and after it close every store it opened and remove the dir. The factory makes
 * the same tests run over another store (a conformance suite: SQLite, PostgreSQL, ...).
 */
export function withTempStore(): TempStores<SqliteStore>;
export function withTempStore<S extends VaultStore>(factory: StoreFactory<S>): TempStores<S>;
export function withTempStore<S extends VaultStore>(factory?: StoreFactory<S>): TempStores<S> {
  const open = factory ?? (sqliteStoreIn() as unknown as StoreFactory<S>);
  let dir: string | undefined;
  let opened: S[] = [];
  beforeEach(() => {
    dir = tempDir('pii-vault-store-');
  });
  afterEach(async () => {
    const closing = opened;
    opened = [];
    try {
      for (const store of closing) await store.close();
    } finally {
      rmSync(dir!, { recursive: true, force: true });
    }
  });
  return {
    get dir() {
      if (!dir) throw new Error('withTempStore: dir is for tests and hooks of the describe that called withTempStore()');
      return dir;
    },
    async open() {
      if (!dir) throw new Error('withTempStore: open() is for tests and hooks of the describe that called withTempStore()');
      const own = join(dir, String(opened.length + 1));
      mkdirSync(own);
      const store = await open(own);
      opened.push(store);
      return store;
    },
  };
}
