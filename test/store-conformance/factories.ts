import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite-store';
import type { VaultStore } from '../../src/store/vault-store';

/** A fresh, empty database opened through a store; `second` is another connection to the same database. */
export interface StoreUnderTest {
  store: VaultStore;
  second?: VaultStore;
  cleanup(): Promise<void>;
}

export interface StoreFactory {
  name: string;
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

/** Every store the conformance suite runs against; a new store is one more entry here. */
export const STORE_FACTORIES: StoreFactory[] = [sqlite];
