import { expect } from 'chai';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_FILE, ConfigError, loadConfig, VaultConfig } from '../../src/config';
import { initDataDir, StarterKeys } from '../../src/app/init';
import { createLogger } from '../../src/logger';
import { OpenedVault, openVault } from '../../src/app/open-vault';
import type { Caller } from '../../src/service/context';
import { migrateVault } from '../../src/app/migrate';
import { ADMIN_URL, createTestDatabase, requirePostgres, sql } from '../helpers/postgres';
import { openEmbeddedVault, tempDir } from '../helpers/test-vault';

const PAN = '4111111111111111';
const OTHER_PAN = '5555555555554444';
const ENABLED = [{ tenant: '*', types: ['pan'] }];

type Keys = Required<StarterKeys>;

/** Adds settings to a data dir's config.json. */
function configure(dir: string, settings: Record<string, unknown>): void {
  const file = join(dir, CONFIG_FILE);
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...settings }, null, 2));
}

async function open(config: VaultConfig): Promise<OpenedVault> {
  return openVault(config, { logger: createLogger('silent') });
}

function caller(opened: OpenedVault, apiKey: string): Caller {
  return { principal: opened.vault.authenticate(apiKey)!, requestId: 'crypto-shredding-test' };
}

async function tokenizeBoth(opened: OpenedVault, keys: Keys): Promise<[string, string]> {
  const { items } = await opened.vault.tokenize(caller(opened, keys.billing), {
    items: [
      { type: 'pan', value: PAN, subject: 'cust_1' },
      { type: 'pan', value: OTHER_PAN, subject: 'cust_2' },
    ],
  });
  return [items[0].token, items[1].token];
}

/** The erasure of subject cust_1 (POST /v1/subjects/erase), as the starter security principal. */
function erase(opened: OpenedVault, keys: Keys) {
  return opened.vault.eraseSubject(caller(opened, keys.security), { subject: 'cust_1' });
}

/** What a vault opened on `config` answers for the tokens: a value, or an item error code. */
async function readBack(config: VaultConfig, keys: Keys, tokens: string[]): Promise<string[]> {
  const opened = await open(config);
  try {
    const { items } = await opened.vault.detokenize(caller(opened, keys.gateway), { tokens, purpose: 'charge' });
    return items.map((i) => ('error' in i ? i.error.code : i.value!));
  } finally {
    await opened.close();
  }
}

/**
 * The promise of per-subject keys: a copy of the vault database taken before an erasure (a backup)
 * cannot give back an erased subject's values, though it opens with the same master key and key
 * store; another subject's values still open from it.
 */
describe('crypto-shredding: a backup of the vault database taken before erasure', function () {
  this.timeout(120_000);

  it('SQLite: the copy (checkpointed, then copied) cannot decrypt the destroyed subject, another subject still opens', async () => {
    const root = tempDir();
    try {
      const dir = join(root, 'data');
      const keys = (await initDataDir(dir, { env: {} })).apiKeys as Keys;
      configure(dir, { subjectKeys: { enabled: ENABLED } });
      const live = await openEmbeddedVault(loadConfig(dir, {}, {}), { logger: createLogger('silent') });
      let tokens: [string, string];
      try {
        tokens = await tokenizeBoth(live, keys);
        // The backup: the data dir as it is, with the vault database checkpointed and copied,
        // pointed at the same (live) subject key store.
        const backup = join(root, 'backup');
        await initDataDir(backup, { env: {} });
        for (const file of ['master.key', 'policy.json']) copyFileSync(join(dir, file), join(backup, file));
        configure(backup, { subjectKeys: { enabled: ENABLED, path: join(dir, 'subject-keys.db') } });
        live.store.db.pragma('wal_checkpoint(TRUNCATE)');
        copyFileSync(join(dir, 'vault.db'), join(backup, 'vault.db'));
        const backupConfig = loadConfig(backup, {}, {});
        expect(await readBack(backupConfig, keys, tokens), 'the backup opens before the erasure').to.deep.equal([PAN, OTHER_PAN]);

        expect(await erase(live, keys)).to.deep.equal({ tenant: 'default', erased: { records: 1 } });

        expect(await readBack(backupConfig, keys, tokens)).to.deep.equal(['erased', OTHER_PAN]);
      } finally {
        await live.close();
      }
      expect(await readBack(loadConfig(dir, {}, {}), keys, tokens)).to.deep.equal(['not_found', OTHER_PAN]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  describe('PostgreSQL', () => {
    before(async function () {
      await requirePostgres(this);
    });

    it('the copy (CREATE DATABASE … TEMPLATE) cannot decrypt the destroyed subject, another subject still opens', async () => {
      const [main, keyStore] = [await createTestDatabase(), await createTestDatabase()];
      const copyName = `${main.name}_backup`;
      const copyUrl = Object.assign(new URL(main.url), { pathname: `/${copyName}` }).toString();
      const root = tempDir();
      try {
        const dir = join(root, 'data');
        const env = { PII_VAULT_DATABASE_URL: main.url, PII_VAULT_SUBJECT_KEYS_DATABASE_URL: keyStore.url };
        const keys = (await initDataDir(dir, { env })).apiKeys as Keys;
        configure(dir, { subjectKeys: { enabled: ENABLED } });
        const live = await open(loadConfig(dir, {}, env));
        let tokens: [string, string];
        try {
          tokens = await tokenizeBoth(live, keys);
        } finally {
          await live.close(); // TEMPLATE needs the source database without sessions
        }
        await sql(ADMIN_URL, `CREATE DATABASE ${copyName} TEMPLATE ${main.name}`);
        const backupConfig = loadConfig(dir, {}, { ...env, PII_VAULT_DATABASE_URL: copyUrl });
        expect(await readBack(backupConfig, keys, tokens), 'the backup opens before the erasure').to.deep.equal([PAN, OTHER_PAN]);

        const eraser = await open(loadConfig(dir, {}, env));
        try {
          expect(await erase(eraser, keys)).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
        } finally {
          await eraser.close();
        }

        expect(await readBack(backupConfig, keys, tokens)).to.deep.equal(['erased', OTHER_PAN]);
        expect(await readBack(loadConfig(dir, {}, env), keys, tokens)).to.deep.equal(['not_found', OTHER_PAN]);
      } finally {
        await sql(ADMIN_URL, `DROP DATABASE IF EXISTS ${copyName} WITH (FORCE)`);
        await main.drop();
        await keyStore.drop();
        rmSync(root, { recursive: true, force: true });
      }
    });

    it('migrate moves subject-keys.db into the subject key database (required), and the PostgreSQL vault reads and erases', async () => {
      const [target, keyStore] = [await createTestDatabase(), await createTestDatabase()];
      const root = tempDir();
      try {
        const dir = join(root, 'data');
        const keys = (await initDataDir(dir, { env: {} })).apiKeys as Keys;
        configure(dir, { subjectKeys: { enabled: ENABLED } });
        const live = await open(loadConfig(dir, {}, {}));
        let tokens: [string, string];
        try {
          tokens = await tokenizeBoth(live, keys);
        } finally {
          await live.close();
        }
        const refused = await migrateVault(dir, target.url).catch((e: Error) => e);
        expect((refused as Error).message).to.contain('set PII_VAULT_SUBJECT_KEYS_DATABASE_URL (or subjectKeys.databaseUrl)');
        expect(await sql(target.url, "SELECT to_regclass('tokens') AS t")).to.deep.equal([{ t: null }]);

        configure(dir, { subjectKeys: { enabled: ENABLED, databaseUrl: keyStore.url } });
        const summary = await migrateVault(dir, target.url);
        expect(summary.ok).to.equal(true);
        expect(summary.tables.subject_keys).to.deep.equal({ source: 2, target: 2 });
        expect(summary.sample.mismatched).to.equal(0);

        const env = { PII_VAULT_DATABASE_URL: target.url };
        expect(await readBack(loadConfig(dir, {}, env), keys, tokens)).to.deep.equal([PAN, OTHER_PAN]);

        // A key database holding other keys for these subjects (another vault's) is refused.
        await sql(keyStore.url, 'UPDATE subject_keys SET wrapped = wrapped || $1::bytea', [Buffer.from([0])]);
        const other = await createTestDatabase();
        try {
          const conflict = await migrateVault(dir, other.url).catch((e: Error) => e);
          expect((conflict as Error).message).to.contain('the subject key database holds other keys for some of these subjects');
          expect(await sql(other.url, "SELECT to_regclass('tokens') AS t"), 'nothing copied to the target').to.deep.equal([{ t: null }]);
        } finally {
          await other.drop();
        }
        await sql(keyStore.url, 'UPDATE subject_keys SET wrapped = substring(wrapped from 1 for length(wrapped) - 1)');
        const onPostgres = await open(loadConfig(dir, {}, env));
        try {
          expect(await erase(onPostgres, keys)).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
        } finally {
          await onPostgres.close();
        }
        expect(await readBack(loadConfig(dir, {}, env), keys, tokens)).to.deep.equal(['not_found', OTHER_PAN]);
      } finally {
        await target.drop();
        await keyStore.drop();
        rmSync(root, { recursive: true, force: true });
      }
    });

    it('a PostgreSQL vault that enables per-subject keys without a database of their own does not start, saying what to set', async () => {
      const main = await createTestDatabase();
      const root = tempDir();
      try {
        const dir = join(root, 'data');
        await initDataDir(dir, { env: { PII_VAULT_DATABASE_URL: main.url } });
        configure(dir, { subjectKeys: { enabled: ENABLED } });
        const err = await open(loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: main.url })).catch((e) => e);
        expect(err).to.be.instanceOf(ConfigError);
        expect(err.message).to.contain('subjectKeys.databaseUrl (PII_VAULT_SUBJECT_KEYS_DATABASE_URL)');
        const same = (() => {
          try {
            loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: main.url, PII_VAULT_SUBJECT_KEYS_DATABASE_URL: main.url });
          } catch (e) {
            return e as Error;
          }
        })();
        expect(same?.message).to.contain('/subjectKeys/databaseUrl: must name a database other than database.url');
      } finally {
        await main.drop();
        rmSync(root, { recursive: true, force: true });
      }
    });
  });
});
