import { AuditLog } from './audit/audit-log';
import { VaultConfig, dataPath } from './config';
import { KeyManager, SYSTEM_TENANT } from './crypto/key-manager';
import { KeyUnavailableError } from './crypto/key-provider';
import { LocalKeyProvider, MasterKeyring } from './crypto/local-key-provider';
import { loadPolicyFile } from './policy/policy-file';
import { PolicyDocument } from './policy/policy';
import { Vault } from './service/vault';
import { SqliteStore } from './store/sqlite-store';

export interface OpenedVault {
  vault: Vault;
  store: SqliteStore;
  keys: KeyManager;
  audit: AuditLog;
  /** Re-reads the policy file; the old policy stays in force if the new one is invalid. */
  reloadPolicy(): PolicyDocument;
  close(): Promise<void>;
}

/** The master keyring: PII_VAULT_MASTER_KEY (base64) if set, else the key file. */
export function loadKeyring(config: VaultConfig, env: NodeJS.ProcessEnv = process.env): MasterKeyring {
  if (env.PII_VAULT_MASTER_KEY) return MasterKeyring.fromBase64(env.PII_VAULT_MASTER_KEY);
  return MasterKeyring.load(dataPath(config, config.keyProvider.keyFile));
}

/**
 * Builds a vault from its configuration and checks that it is usable: the database opens with its
 * durability settings, and the master key unwraps the vault's own audit key (a wrong key refuses
 * to start rather than writing anything under it).
 */
export async function openVault(config: VaultConfig): Promise<OpenedVault> {
  const keyring = loadKeyring(config);
  let policy = loadPolicyFile(dataPath(config, config.policyFile));
  const store = new SqliteStore(dataPath(config, config.databaseFile));
  try {
    const keys = new KeyManager(store, new LocalKeyProvider(keyring), {
      ttlMs: config.keyCacheTtlSeconds * 1000,
      maxEntries: config.keyCacheMaxEntries,
    });
    const audit = new AuditLog(store, keys);
    await keys.activeKey(SYSTEM_TENANT, 'audit').catch((err: Error) => {
      throw new KeyUnavailableError(`the master key does not open this database: ${err.message}`);
    });
    const vault = new Vault({
      store,
      keys,
      audit,
      policy: () => policy,
      phoneRegion: config.phoneRegion,
      now: Date.now,
    });
    return {
      vault,
      store,
      keys,
      audit,
      reloadPolicy: () => (policy = loadPolicyFile(dataPath(config, config.policyFile))),
      close: async () => {
        keys.clear();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
