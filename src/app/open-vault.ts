import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-write';
import { AuditLog } from '../audit/audit-log';
import { CONFIG_FILE, ConfigError, VaultConfig, dataPath } from '../config';
import { AwsKmsKeyProvider } from '../crypto/aws-kms-key-provider';
import { KeyManager } from '../keys/key-manager';
import { SYSTEM_TENANT } from '../domain/tenants';
import { KeyProvider, KeyUnavailableError } from '../crypto/key-provider';
import { LocalKeyProvider, MasterKeyring } from '../crypto/local-key-provider';
import { RoutingKeyProvider } from '../crypto/routing-key-provider';
import { loadPolicyFile } from '../policy/policy-file';
import { PolicyDocument } from '../policy/policy';
import { KekControl, KekTarget, RecordBindingControl } from '../service/context';
import { VaultError } from '../errors';
import { requireNotWritableByOthers } from '../file-modes';
import { Vault } from '../service/vault';
import { createLogger, Logger } from '../logger';
import pino from 'pino';
import { OpenedStore, openStore, openSubjectKeyStore } from '../store/open-store';
import type { SubjectKeyStore } from '../store/subject-key-store';
import { SubjectKeys } from '../keys/subject-keys';
import { subjectKeyControl } from '../service/subject-layer';

/** `S` narrows the store where the caller knows which one it opened (tests of the embedded store). */
export interface OpenedVault<S extends OpenedStore = OpenedStore> {
  vault: Vault;
  store: S;
  keys: KeyManager;
  audit: AuditLog;
  keks: KekControl;
  /** Re-reads the policy file; the old policy stays in force if the new one is invalid. */
  reloadPolicy(): PolicyDocument;
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;

/** The master keyring: PII_VAULT_MASTER_KEY (base64) if set, else the key file if present. */
function loadKeyring(config: VaultConfig, env: NodeJS.ProcessEnv = process.env): MasterKeyring | undefined {
  if (env.PII_VAULT_MASTER_KEY) return MasterKeyring.fromBase64(env.PII_VAULT_MASTER_KEY);
  const file = dataPath(config, config.keyProvider.keyFile);
  if (config.keyProvider.type === 'aws-kms' && !existsSync(file)) return undefined;
  return MasterKeyring.load(file);
}

/**
 * Builds a vault from its configuration and checks that it is usable: the database opens with its
 * durability settings, and the KEK unwraps the vault's own audit key (a wrong key refuses to start
 * rather than writing anything under it). Re-encryption jobs left running resume.
 */
export async function openVault(config: VaultConfig, options: { resumeJobs?: boolean; logger?: Logger } = {}): Promise<OpenedVault> {
  checkPrivate(config.dataDir, 'data dir', 'chmod 700');
  requireNotWritableByOthers(join(config.dataDir, CONFIG_FILE), 'config file');
  const loadPolicy = () => {
    const file = dataPath(config, config.policyFile);
    requireNotWritableByOthers(file, 'policy file');
    return loadPolicyFile(file);
  };
  let policy = loadPolicy();
  const keks = await createKekControl(config);
  // Without a logger given (CLI commands), stderr: stdout carries the command's own output.
  const logger = options.logger ?? createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }));
  const store = await openStore(config, (message) => logger.warn(message));
  let subjectKeyStore: SubjectKeyStore | undefined;
  try {
    subjectKeyStore = await openSubjectKeyStore(config, (message) => logger.warn(message));
    const keys = new KeyManager(store, keks.provider, {
      ttlMs: config.keyCacheTtlSeconds * 1000,
      maxEntries: config.keyCacheMaxEntries,
    });
    const subjectKeys =
      subjectKeyStore &&
      new SubjectKeys(subjectKeyStore, keys, {
        ttlMs: config.subjectKeys.cacheTtlSeconds * 1000,
        maxEntries: config.subjectKeys.cacheMaxEntries,
      });
    const audit = new AuditLog(store, keys);
    await keys.activeKey(SYSTEM_TENANT, 'audit').catch((err: Error) => {
      const which = keks.provider.describe().kind === 'local' ? 'master key' : 'KMS key';
      throw new KeyUnavailableError(`the ${which} does not open this database: ${err.message}`);
    });
    const vault = new Vault({
      store,
      keys,
      audit,
      keks,
      recordBinding: recordBindingControl(config),
      subjectKeys: subjectKeyControl(config.subjectKeys.enabled, subjectKeys),
      policy: () => policy,
      phoneRegion: config.phoneRegion,
      logger,
      rotation: { maxAgeMs: config.dekMaxAgeDays * DAY_MS, maxEncryptions: config.dekMaxEncryptions },
      reencrypt: { batchSize: config.reencryptBatchSize, pauseMs: config.reencryptPauseMs, leaseMs: config.reencryptLeaseMs },
      retention: config.retention,
      purge: { intervalMs: config.purgeIntervalSeconds * 1000, batchSize: config.purgeBatchSize },
      now: Date.now,
    });
    // Only the serving process runs jobs and the purge task; a CLI command opening the same data dir must not.
    if (options.resumeJobs) {
      await vault.jobs.resumeAll();
      vault.purge.start();
    }
    return {
      vault,
      store,
      keys,
      audit,
      keks,
      reloadPolicy: () => (policy = loadPolicy()),
      close: async () => {
        await vault.jobs.stop();
        await vault.purge.stop();
        await vault.authFailures.flush();
        keys.clear();
        subjectKeys?.clear();
        await subjectKeyStore?.close();
        await store.close();
      },
    };
  } catch (err) {
    await subjectKeyStore?.close();
    await store.close();
    throw err;
  }
}

/** Refuses to run from a data dir other users can enter: it holds the keys and the database. */
function checkPrivate(path: string, what: string, fix: string): void {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    throw new ConfigError(
      `${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code}); run \`pii-vault init --data-dir ${path}\` first`,
    );
  }
  if (mode & 0o077)
    throw new ConfigError(`${what} ${path} has mode ${mode.toString(8)}; it must be private to the vault's user (${fix} ${path})`);
}

/** The configured KEKs: the primary wraps, every available one unwraps what it once wrapped. */
async function createKekControl(config: VaultConfig): Promise<KekControl> {
  const keyring = loadKeyring(config);
  const local = keyring && new LocalKeyProvider(keyring);
  // Whichever key wraps new data keys, every configured key may unwrap, and no other.
  const allowedKeyIds = () => [config.keyProvider.kms.keyId, ...config.keyProvider.kms.allowedKeyIds].filter((id): id is string => !!id);
  const kmsFor = (keyId: string) =>
    AwsKmsKeyProvider.fromSettings({ ...config.keyProvider.kms, keyId, allowedKeyIds: allowedKeyIds() }).init();
  let kms: AwsKmsKeyProvider | undefined;
  if (config.keyProvider.type === 'aws-kms') {
    const keyId = config.keyProvider.kms.keyId;
    if (!keyId)
      throw new KeyUnavailableError(
        'keyProvider.type is aws-kms but no KMS key id is configured (keyProvider.kms.keyId or PII_VAULT_KMS_KEY_ID)',
      );
    kms = await kmsFor(keyId);
  }
  const primary: KeyProvider | undefined = config.keyProvider.type === 'aws-kms' ? kms : local;
  if (!primary) throw new KeyUnavailableError('no key-encryption key is configured');
  const provider = new RoutingKeyProvider(
    primary,
    [local, kms].filter((p): p is LocalKeyProvider | AwsKmsKeyProvider => !!p && p !== primary),
  );

  return {
    provider,
    reloadLocal() {
      const fresh = loadKeyring(config);
      if (local && fresh) local.replaceKeyring(fresh);
    },
    async switchPrimary(target: KekTarget) {
      if (target.type === 'local') {
        if (!local) throw new KeyUnavailableError('no local master key is available');
        provider.setPrimary(local);
      } else {
        const keyId = target.keyId ?? config.keyProvider.kms.keyId;
        // The KEK must be one the operator configured: a caller must not point the vault at a key it controls.
        if (!keyId || !allowedKeyIds().includes(keyId)) {
          throw new VaultError('forbidden', 'That KMS key is not configured; add it to keyProvider.kms.keyId or allowedKeyIds first.');
        }
        provider.setPrimary(await kmsFor(keyId));
        target = { type: 'aws-kms', keyId };
      }
      rememberPrimary(config, target);
    },
  };
}

/** Records the primary KEK in config.json, so a restart keeps wrapping under it. */
function rememberPrimary(config: VaultConfig, target: KekTarget): void {
  updateConfigFile(config, (raw) => {
    raw.keyProvider = { ...(raw.keyProvider ?? {}), type: target.type };
    if (target.type === 'aws-kms') {
      const kms = { allowedKeyIds: [], ...(raw.keyProvider.kms ?? {}) };
      // The key switched away from stays allowed: data keys a rewrap has not moved yet are still under it.
      const previous: string | undefined = kms.keyId ?? config.keyProvider.kms.keyId;
      if (previous && previous !== target.keyId && !kms.allowedKeyIds.includes(previous)) kms.allowedKeyIds.push(previous);
      raw.keyProvider.kms = { ...kms, keyId: target.keyId };
    }
  });
}

function recordBindingControl(config: VaultConfig): RecordBindingControl {
  let setting = config.legacyRecordBinding;
  return {
    acceptsLegacy: () => setting === 'accept',
    refuseLegacy: () => {
      updateConfigFile(config, (raw) => {
        raw.legacyRecordBinding = 'refuse';
      });
      setting = 'refuse';
    },
  };
}

/** Changes config.json (durably, see atomic-write.ts) as the vault's own settings change. */
function updateConfigFile(config: VaultConfig, change: (raw: ReturnType<typeof JSON.parse>) => void): void {
  const file = join(config.dataDir, CONFIG_FILE);
  const raw = JSON.parse(readFileSync(file, 'utf8'));
  change(raw);
  writeFileAtomic(file, JSON.stringify(raw, null, 2) + '\n', { mode: 0o600 });
}
