import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fsyncDirectory, writeFileAtomic } from '../atomic-write';
import { CONFIG_FILE, defaultConfigFile, loadConfig } from '../config';
import { MasterKeyring } from '../crypto/local-key-provider';
import { openVault } from './open-vault';
import { generateApiKey, hashApiKey } from '../policy/authenticator';
import { STARTER_PRINCIPALS, loadPolicyFile, starterPolicy } from '../policy/policy-file';
import { PolicyDocument } from '../policy/policy';
import { redactUrl } from '../store/postgres-errors';
import { PostgresStore } from '../store/postgres-store';

export type StarterKeys = Partial<Record<(typeof STARTER_PRINCIPALS)[number], string>>;

export interface InitResult {
  dataDir: string;
  apiKeys: StarterKeys;
  /** What already existed and was kept (with --force). */
  kept: string[];
}

class InitRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InitRefusedError';
  }
}

const DATABASE_CHECK_TIMEOUT_MS = 5_000;

const VAULT_FILES = [CONFIG_FILE, 'master.key', 'policy.json', 'vault.db'];

/**
 * Creates a data dir (0700) with a master keyring (0600), config, starter policy and database.
 * On an existing vault it refuses unless `force`, which keeps every key, record and setting and
 * only re-issues the starter principals' API keys.
 */
export async function initDataDir(dataDir: string, options: { force?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<InitResult> {
  const dir = resolve(dataDir);
  const env = options.env ?? process.env;
  const existing = VAULT_FILES.filter((f) => existsSync(join(dir, f)));
  if (existing.length > 0 && !options.force) {
    throw new InitRefusedError(
      `${dir} already holds a vault (${existing.join(', ')}); nothing was changed. ` +
        'Add --force to re-issue the starter API keys (keys, records and settings are kept).',
    );
  }
  if (existing.length === 0) refuseForeignDirectory(dir);
  const databaseUrl = env.PII_VAULT_DATABASE_URL;
  // A new data dir's master key could not open a vault already in the database: refuse before writing anything.
  if (existing.length === 0 && databaseUrl && (await PostgresStore.holdsVault(databaseUrl, DATABASE_CHECK_TIMEOUT_MS))) {
    throw new InitRefusedError(`the database ${redactUrl(databaseUrl)} already holds a vault; nothing was changed.`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  fsyncDirectory(dirname(dir));

  const writeNew = (file: string, contents: string) => writeFileAtomic(join(dir, file), contents, { mode: 0o600, exclusive: true });
  if (!existsSync(join(dir, CONFIG_FILE))) writeNew(CONFIG_FILE, JSON.stringify(newVaultConfigFile(), null, 2) + '\n');
  const config = loadConfig(dir, {}, databaseUrl ? { PII_VAULT_DATABASE_URL: databaseUrl } : {});
  const keyFile = join(dir, config.keyProvider.keyFile);
  if (!env.PII_VAULT_MASTER_KEY && !existsSync(keyFile)) MasterKeyring.generate().save(keyFile, true);

  const apiKeys = Object.fromEntries(STARTER_PRINCIPALS.map((p) => [p, generateApiKey()])) as Required<StarterKeys>;
  const hashes = Object.fromEntries(STARTER_PRINCIPALS.map((p) => [p, hashApiKey(apiKeys[p])])) as Required<StarterKeys>;
  const policyPath = join(dir, config.policyFile);
  const policy = existsSync(policyPath) ? reissueKeys(loadPolicyFile(policyPath), hashes) : starterPolicy(hashes);
  writeFileAtomic(policyPath, JSON.stringify(policy, null, 2) + '\n', { mode: 0o600 });

  // Opening creates the schema and the vault's audit key, and proves the master key fits.
  const opened = await openVault(config);
  try {
    await opened.audit.append({
      ts: new Date().toISOString(),
      requestId: 'cli',
      principal: 'cli',
      tenant: null,
      action: existing.length ? 'vault:reinit' : 'vault:init',
      types: [],
      tokens: [],
      purpose: null,
      outcome: 'allow',
      reason: `starter API keys issued for ${STARTER_PRINCIPALS.join(', ')}`,
      subjects: [],
    });
  } finally {
    await opened.close();
  }
  // Only principals still in the policy get a usable key.
  const issued = Object.fromEntries(STARTER_PRINCIPALS.filter((p) => policy.principals[p]).map((p) => [p, apiKeys[p]]));
  return { dataDir: dir, apiKeys: issued, kept: existing };
}

/**
 * A new vault takes over its directory (chmod 700). Only a directory that does not exist yet, or an
 * empty one of its own, is taken: a non-empty directory holds someone else's files, and a shared
 * one (world-writable or sticky, like /tmp) must stay shared.
 */
function refuseForeignDirectory(dir: string): void {
  if (!existsSync(dir)) return;
  const stat = statSync(dir);
  if (!stat.isDirectory()) throw new InitRefusedError(`${dir} exists and is not a directory; nothing was changed.`);
  if (readdirSync(dir).length > 0) {
    throw new InitRefusedError(
      `${dir} is not empty and holds no vault; nothing was changed. Choose a new or empty directory (init makes it private, mode 700).`,
    );
  }
  if (stat.mode & 0o1002) {
    throw new InitRefusedError(
      `${dir} is a shared directory (mode ${(stat.mode & 0o7777).toString(8)}); nothing was changed. Choose a new directory inside it.`,
    );
  }
}

/** Replaces the API keys of the starter principals still present in a policy; the rest is kept. */
function reissueKeys(policy: PolicyDocument, hashes: Required<StarterKeys>): PolicyDocument {
  const createdAt = new Date().toISOString();
  for (const id of STARTER_PRINCIPALS) {
    const principal = policy.principals[id];
    if (principal) principal.apiKeys = [{ sha256: hashes[id], createdAt }];
  }
  return policy;
}

/** The config.json of a new vault: the defaults, and no records of binding 1 to accept (it has none). */
function newVaultConfigFile() {
  return { ...defaultConfigFile(), legacyRecordBinding: 'refuse' as const };
}
