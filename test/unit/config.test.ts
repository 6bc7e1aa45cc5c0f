import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect } from 'chai';
import { CONFIG_FILE, ConfigError, ConfigSchema, dataPath, defaultConfigFile, loadConfig } from '../../src/config';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { caught } from '../helpers/caught';

/** Every default, spelled out independently of the schema (as the README documents them). */
const DOCUMENTED_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  databaseFile: 'vault.db',
  keyProvider: { type: 'local', keyFile: 'master.key', kms: { allowedKeyIds: [], timeoutMs: 2000, maxAttempts: 3 } },
  policyFile: 'policy.json',
  logLevel: 'info',
  keyCacheTtlSeconds: 900,
  keyCacheMaxEntries: 10_000,
  dekMaxAgeDays: 90,
  dekMaxEncryptions: 2 ** 30,
  legacyRecordBinding: 'accept',
  reencryptBatchSize: 200,
  reencryptPauseMs: 5,
  reencryptLeaseMs: 30_000,
  rateLimits: { default: { ratePerSecond: 2000, burst: 4000 }, roles: {} },
  authFailuresPerMinute: 20,
  maxConcurrentRequests: 512,
  maxConcurrentRequestsPerPrincipal: 64,
  trustProxy: [],
  shutdownTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  databaseBusyTimeoutMs: 5_000,
  database: { poolSize: 10, connectTimeoutMs: 5_000, statementTimeoutMs: 10_000, idleInTransactionTimeoutMs: 30_000 },
  metrics: true,
  subjectKeys: { enabled: [], path: 'subject-keys.db', cacheTtlSeconds: 60, cacheMaxEntries: 10_000 },
  retention: {},
  purgeIntervalSeconds: 3_600,
  purgeBatchSize: 500,
};

describe('config / loadConfig', () => {
  let root: string;
  let n = 0;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'pii-vault-config-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  /** A fresh data dir holding config.json with `content` (an object is JSON-encoded). */
  const dataDir = (content: unknown = {}): string => {
    const dir = join(root, `data-${++n}`);
    mkdirSync(dir);
    writeFileSync(join(dir, CONFIG_FILE), typeof content === 'string' ? content : JSON.stringify(content));
    return dir;
  };

  const NO_ENV: NodeJS.ProcessEnv = {};

  const expectConfigError = (fn: () => unknown, ...patterns: Array<RegExp | string>): ConfigError => {
    const err = caught(fn);
    expect(err).to.be.instanceOf(ConfigError);
    for (const p of patterns) {
      if (typeof p === 'string') expect((err as Error).message).to.include(p);
      else expect((err as Error).message).to.match(p);
    }
    return err as ConfigError;
  };

  it('applies every default to an empty config.json and resolves the data dir', () => {
    const dir = dataDir({});
    const config = loadConfig(dir, {}, NO_ENV);
    expect(config).to.deep.equal({ ...DOCUMENTED_DEFAULTS, dataDir: resolve(dir) });
    expect(config.phoneRegion).to.equal(undefined);
  });

  it('defaults the fields of a partial keyProvider object', () => {
    const config = loadConfig(dataDir({ keyProvider: { keyFile: '/secrets/master.key' } }), {}, NO_ENV);
    expect(config.keyProvider).to.deep.equal({
      type: 'local',
      keyFile: '/secrets/master.key',
      kms: { allowedKeyIds: [], timeoutMs: 2000, maxAttempts: 3 },
    });
  });

  it('takes KMS settings from PII_VAULT_KMS_* environment variables', () => {
    const config = loadConfig(
      dataDir({ keyProvider: { type: 'aws-kms' } }),
      {},
      {
        PII_VAULT_KMS_KEY_ID: 'alias/pii-vault',
        PII_VAULT_KMS_REGION: 'eu-west-1',
        PII_VAULT_KMS_ENDPOINT: 'http://127.0.0.1:4599',
      },
    );
    expect(config.keyProvider.kms).to.deep.equal({
      keyId: 'alias/pii-vault',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:4599',
      allowedKeyIds: [],
      timeoutMs: 2000,
      maxAttempts: 3,
    });
  });

  it('reads retention limits per data type; either field may be left out', () => {
    const retention = {
      pan: { defaultTtlSeconds: 86_400, maxTtlSeconds: 2_592_000 },
      email: { maxTtlSeconds: 60 },
      ssn: { defaultTtlSeconds: 5 },
    };
    expect(loadConfig(dataDir({ retention, purgeIntervalSeconds: 0 }), {}, NO_ENV)).to.deep.include({ retention, purgeIntervalSeconds: 0 });
  });

  it('refuses at start retention limits of an unknown type, above the contract maximum, not positive integers, or a default above the max', () => {
    expectConfigError(
      () => loadConfig(dataDir({ retention: { card: { maxTtlSeconds: 60 } } }), {}, NO_ENV),
      '/retention/card: not a data type (one of pan,',
    );
    expectConfigError(
      () => loadConfig(dataDir({ retention: { pan: { defaultTtlSeconds: 61, maxTtlSeconds: 60 } } }), {}, NO_ENV),
      '/retention/pan: defaultTtlSeconds (61) must not be above maxTtlSeconds (60)',
    );
    expectConfigError(
      () => loadConfig(dataDir({ retention: { pan: { maxTtlSeconds: 10 * 365 * 24 * 3600 + 1 } } }), {}, NO_ENV),
      '/retention/pan/maxTtlSeconds',
    );
    expectConfigError(
      () => loadConfig(dataDir({ retention: { pan: { defaultTtlSeconds: 0 } } }), {}, NO_ENV),
      '/retention/pan/defaultTtlSeconds',
    );
    expectConfigError(
      () => loadConfig(dataDir({ retention: { pan: { defaultTtlSeconds: 1.5 } } }), {}, NO_ENV),
      '/retention/pan/defaultTtlSeconds',
    );
    expectConfigError(() => loadConfig(dataDir({ retention: { pan: { ttl: 5 } } }), {}, NO_ENV), '/retention/pan');
    expectConfigError(() => loadConfig(dataDir({ purgeIntervalSeconds: -1 }), {}, NO_ENV), '/purgeIntervalSeconds');
  });

  it('uses the values of config.json over the defaults', () => {
    const file = {
      host: '0.0.0.0',
      port: 9000,
      databaseFile: 'data/v.db',
      policyFile: 'p.json',
      phoneRegion: 'GB',
      logLevel: 'warn',
      keyCacheTtlSeconds: 60,
      keyCacheMaxEntries: 5,
    };
    expect(loadConfig(dataDir(file), {}, NO_ENV)).to.include(file);
  });

  it('the environment (PII_VAULT_PORT, PII_VAULT_HOST, PII_VAULT_LOG_LEVEL) overrides config.json', () => {
    const dir = dataDir({ host: '10.0.0.1', port: 9000, logLevel: 'warn' });
    const config = loadConfig(dir, {}, { PII_VAULT_PORT: '9100', PII_VAULT_HOST: '0.0.0.0', PII_VAULT_LOG_LEVEL: 'debug' });
    expect(config).to.include({ port: 9100, host: '0.0.0.0', logLevel: 'debug' });
  });

  it('each environment variable overrides only its own key', () => {
    const dir = dataDir({ host: '10.0.0.1', port: 9000, logLevel: 'warn' });
    expect(loadConfig(dir, {}, { PII_VAULT_PORT: '9100' })).to.include({ port: 9100, host: '10.0.0.1', logLevel: 'warn' });
    expect(loadConfig(dir, {}, { PII_VAULT_HOST: '::1' })).to.include({ port: 9000, host: '::1', logLevel: 'warn' });
    expect(loadConfig(dir, {}, { PII_VAULT_LOG_LEVEL: 'silent' })).to.include({ port: 9000, host: '10.0.0.1', logLevel: 'silent' });
  });

  it('PII_VAULT_DATABASE_URL selects PostgreSQL and wins over database.url; only postgres:// URLs are accepted', () => {
    const dir = dataDir({ database: { url: 'postgres://vault@db-a:5432/vault', poolSize: 4 } });
    expect(loadConfig(dir, {}, NO_ENV).database).to.include({ url: 'postgres://vault@db-a:5432/vault', poolSize: 4 });
    expect(loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: 'postgres://vault@db-b/vault' }).database).to.include({
      url: 'postgres://vault@db-b/vault',
      poolSize: 4,
    });
    expect(loadConfig(dataDir({}), {}, NO_ENV).database.url).to.equal(undefined);
    expect(() => loadConfig(dataDir({ database: { url: 'mysql://x/y' } }), {}, NO_ENV)).to.throw(ConfigError, '/database/url');
  });

  it('subjectKeys: rules of tenant and data types (or *), validated; PII_VAULT_SUBJECT_KEYS_DATABASE_URL sets databaseUrl', () => {
    const enabled = [
      { tenant: '*', types: ['pan', 'email'] },
      { tenant: 'eu', types: ['*'] },
    ];
    const dir = dataDir({ subjectKeys: { enabled } });
    expect(loadConfig(dir, {}, NO_ENV).subjectKeys).to.deep.include({ enabled, path: 'subject-keys.db' });
    expect(loadConfig(dir, {}, { PII_VAULT_SUBJECT_KEYS_DATABASE_URL: 'postgres://keys@db-k/keys' }).subjectKeys).to.deep.include({
      enabled,
      databaseUrl: 'postgres://keys@db-k/keys',
    });
    expectConfigError(
      () => loadConfig(dataDir({ subjectKeys: { enabled: [{ tenant: '*', types: ['cvv'] }] } }), {}, NO_ENV),
      '/subjectKeys/enabled/0/types/0',
    );
    expectConfigError(
      () => loadConfig(dataDir({ subjectKeys: { enabled: [{ tenant: '*', types: [] }] } }), {}, NO_ENV),
      '/subjectKeys/enabled/0/types',
    );
    expectConfigError(() => loadConfig(dataDir({ subjectKeys: { enabled: [{ types: ['pan'] }] } }), {}, NO_ENV), '/subjectKeys/enabled/0');
    expectConfigError(() => loadConfig(dataDir({ subjectKeys: { databaseUrl: 'mysql://x/y' } }), {}, NO_ENV), '/subjectKeys/databaseUrl');
  });

  it('subjectKeys.databaseUrl must not be the vault database: the keys would live on in its backups', () => {
    const url = 'postgres://vault@db-a:5432/vault';
    expectConfigError(
      () => loadConfig(dataDir({ database: { url }, subjectKeys: { databaseUrl: url } }), {}, NO_ENV),
      '/subjectKeys/databaseUrl: must name a database other than database.url',
    );
  });

  it('empty environment variables are ignored', () => {
    const dir = dataDir({ port: 9000 });
    expect(loadConfig(dir, {}, { PII_VAULT_PORT: '', PII_VAULT_HOST: '', PII_VAULT_LOG_LEVEL: '' })).to.include({
      port: 9000,
      host: '127.0.0.1',
      logLevel: 'info',
    });
  });

  it('reads only the environment it is given (not process.env)', () => {
    const saved = process.env.PII_VAULT_PORT;
    process.env.PII_VAULT_PORT = '9999';
    try {
      expect(loadConfig(dataDir({}), {}, NO_ENV).port).to.equal(8080);
      expect(loadConfig(dataDir({}), {}).port).to.equal(9999);
    } finally {
      if (saved === undefined) delete process.env.PII_VAULT_PORT;
      else process.env.PII_VAULT_PORT = saved;
    }
  });

  it('command-line flags override the environment and config.json', () => {
    const dir = dataDir({ host: '10.0.0.1', port: 9000 });
    const env = { PII_VAULT_PORT: '9100', PII_VAULT_HOST: '0.0.0.0' };
    expect(loadConfig(dir, { host: '127.0.0.2', port: 9200 }, env)).to.include({ host: '127.0.0.2', port: 9200 });
    // Only the flags given win.
    expect(loadConfig(dir, { port: 9200 }, env)).to.include({ host: '0.0.0.0', port: 9200 });
    expect(loadConfig(dir, { host: '127.0.0.2' }, env)).to.include({ host: '127.0.0.2', port: 9100 });
  });

  it('a --port 0 flag (pick a free port) still wins over the environment', () => {
    expect(loadConfig(dataDir({ port: 9000 }), { port: 0 }, { PII_VAULT_PORT: '9100' }).port).to.equal(0);
  });

  it('rejects an unknown key in config.json, naming the file and the key', () => {
    const dir = dataDir({ port: 8080, prot: 8081 });
    expectConfigError(() => loadConfig(dir, {}, NO_ENV), join(resolve(dir), CONFIG_FILE), '/prot');
  });

  it('rejects an unknown key inside keyProvider, naming the file', () => {
    const dir = dataDir({ keyProvider: { type: 'local', region: 'eu-west-1' } });
    expectConfigError(() => loadConfig(dir, {}, NO_ENV), join(resolve(dir), CONFIG_FILE), '/keyProvider');
  });

  it('a missing config.json: the message names it and suggests `pii-vault init` for that data dir', () => {
    const dir = join(root, 'never-initialised');
    mkdirSync(dir);
    expectConfigError(() => loadConfig(dir, {}, NO_ENV), join(resolve(dir), CONFIG_FILE), 'not found', `pii-vault init --data-dir ${dir}`);
  });

  it('a missing data dir gives the same `pii-vault init` advice', () => {
    const dir = join(root, 'no-such-dir');
    expectConfigError(() => loadConfig(dir, {}, NO_ENV), 'pii-vault init');
  });

  it('a config.json that is not JSON: the message names the file', () => {
    const dir = dataDir('{ "port": 80, ');
    expectConfigError(() => loadConfig(dir, {}, NO_ENV), join(resolve(dir), CONFIG_FILE), 'not valid JSON');
  });

  it('a config.json that is JSON but not an object is rejected', () => {
    for (const content of ['[]', '42', '"x"', 'null']) {
      expectConfigError(() => loadConfig(dataDir(content), {}, NO_ENV), CONFIG_FILE);
    }
  });

  it('rejects an invalid port from config.json (out of range, fractional, negative, a string)', () => {
    for (const port of [65536, 70000, -1, 80.5, '8080', null, true]) {
      expectConfigError(() => loadConfig(dataDir({ port }), {}, NO_ENV), CONFIG_FILE, '/port');
    }
  });

  it('accepts the port range ends 0 and 65535', () => {
    expect(loadConfig(dataDir({ port: 0 }), {}, NO_ENV).port).to.equal(0);
    expect(loadConfig(dataDir({ port: 65535 }), {}, NO_ENV).port).to.equal(65535);
  });

  it('rejects an invalid port from the environment or the flags', () => {
    for (const value of ['abc', '70000', '-1', '80.5', '8080abc']) {
      expectConfigError(() => loadConfig(dataDir({}), {}, { PII_VAULT_PORT: value }), '/port');
    }
    for (const port of [65536, -1, 1.5, NaN]) {
      expectConfigError(() => loadConfig(dataDir({}), { port }, NO_ENV), '/port');
    }
  });

  it('rejects an unknown log level from config.json or the environment', () => {
    expectConfigError(() => loadConfig(dataDir({ logLevel: 'verbose' }), {}, NO_ENV), '/logLevel');
    expectConfigError(() => loadConfig(dataDir({}), {}, { PII_VAULT_LOG_LEVEL: 'trace' }), '/logLevel');
    expectConfigError(() => loadConfig(dataDir({}), {}, { PII_VAULT_LOG_LEVEL: 'INFO' }), '/logLevel');
  });

  it('rejects other invalid values: key provider type, phone region, cache bounds', () => {
    const bad: Record<string, unknown>[] = [
      { keyProvider: { type: 'vault' } },
      { keyProvider: { kms: { timeoutMs: 5 } } },
      { dekMaxEncryptions: 2 ** 32 },
      { reencryptBatchSize: 0 },
      { phoneRegion: 'us' },
      { phoneRegion: 'USA' },
      { keyCacheTtlSeconds: 0 },
      { keyCacheTtlSeconds: 86_401 },
      { keyCacheMaxEntries: 0 },
      { keyCacheMaxEntries: 1_000_001 },
      { host: 8080 },
    ];
    for (const content of bad) expectConfigError(() => loadConfig(dataDir(content), {}, NO_ENV), CONFIG_FILE);
  });

  it('takes trusted proxies as IPv4/IPv6 addresses and CIDRs, and rejects anything else naming the entry', () => {
    const good = ['10.0.0.1', '10.0.0.0/8', '2001:db8::/32', '::1', '0.0.0.0/0'];
    expect(loadConfig(dataDir({ trustProxy: good }), {}, NO_ENV).trustProxy).to.deep.equal(good);
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'proxy.local', '10.0.0.0/8/1', '10.0.0.0/', '10.0.0.256']) {
      expectConfigError(() => loadConfig(dataDir({ trustProxy: [bad] }), {}, NO_ENV), '/trustProxy', bad);
    }
  });

  it('rejects a blank or non-decimal PII_VAULT_PORT ', () => {
    for (const value of [' ', '0x50', '1e3', '+80']) {
      expectConfigError(() => loadConfig(dataDir({}), {}, { PII_VAULT_PORT: value }), '/port');
    }
  });

  it('a config.json of null with an environment override is a ConfigError', () => {
    expectConfigError(() => loadConfig(dataDir('null'), {}, { PII_VAULT_HOST: '0.0.0.0' }), CONFIG_FILE);
  });
});

describe('config / helpers', () => {
  it('dataPath resolves relative paths against the data dir and keeps absolute ones', () => {
    const config = { ...defaultConfigFile(), dataDir: '/var/lib/pii-vault' };
    expect(dataPath(config, 'vault.db')).to.equal('/var/lib/pii-vault/vault.db');
    expect(dataPath(config, 'sub/policy.json')).to.equal('/var/lib/pii-vault/sub/policy.json');
    expect(dataPath(config, '/etc/pii-vault/master.key')).to.equal('/etc/pii-vault/master.key');
  });

  it('defaultConfigFile is a complete, valid config with every default and no data dir', () => {
    const defaults = defaultConfigFile();
    expect(TypeCompiler.Compile(ConfigSchema).Check(defaults)).to.equal(true);
    expect(defaults).to.deep.equal(DOCUMENTED_DEFAULTS);
    expect(defaults).not.to.have.property('dataDir');
  });

  it('every config key has a default or is optional, and a description', () => {
    for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
      const s = schema as { default?: unknown; description?: string; properties?: Record<string, { description?: string }> };
      const optional = !((ConfigSchema.required ?? []) as string[]).includes(key);
      expect(s.default !== undefined || optional, `${key} has a default`).to.equal(true);
      if (!s.properties) expect(s.description, `${key} has a description`).to.be.a('string').and.not.equal('');
    }
  });
});
