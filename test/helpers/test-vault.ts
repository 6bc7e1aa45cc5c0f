import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import supertest from 'supertest';
import { CONFIG_FILE, loadConfig, VaultConfig } from '../../src/config';
import { createApp, HttpLimits } from '../../src/http/app';
import { initDataDir, StarterKeys } from '../../src/app/init';
import { createLogger, Logger } from '../../src/logger';
import { OpenedVault, openVault } from '../../src/app/open-vault';
import { SqliteStore } from '../../src/store/sqlite-store';

export interface TestVault {
  dir: string;
  config: VaultConfig;
  keys: Required<StarterKeys>;
  /** On the embedded store: tests may look into its SQLite file. */
  opened: OpenedVault<SqliteStore>;
  http: ReturnType<typeof supertest>;
  /** Headers for a starter principal. */
  as(principal: keyof Required<StarterKeys>): Record<string, string>;
  /** Tokenizes through the API as billing; throws unless answered 200. Returns the tokens in order. */
  tokenize(items: object[]): Promise<string[]>;
  close(): Promise<void>;
}

/** openVault on a data dir without a database URL: the embedded store, which tests may look into. */
export async function openEmbeddedVault(config: VaultConfig, options: { logger?: Logger } = {}): Promise<OpenedVault<SqliteStore>> {
  const opened = await openVault(config, options);
  if (!(opened.store instanceof SqliteStore)) {
    await opened.close();
    throw new Error('expected the embedded SQLite store');
  }
  return opened as OpenedVault<SqliteStore>;
}

export function tempDir(prefix = 'pii-vault-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A vault on a fresh data dir (real SQLite file, local master key) driven in-process by supertest. */
export async function createTestVault(
  limits: Partial<HttpLimits> = {},
  options: { logger?: Logger; settings?: Record<string, unknown> } = {},
): Promise<TestVault> {
  const dir = join(tempDir(), 'data');
  const { apiKeys } = await initDataDir(dir, { env: {} });
  if (options.settings) {
    const file = join(dir, CONFIG_FILE);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...options.settings }, null, 2));
  }
  const config = loadConfig(dir, {}, {});
  const logger = options.logger ?? createLogger('silent');
  const opened = await openEmbeddedVault(config, { logger });
  const app = createApp({
    vault: opened.vault,
    logger,
    // Generous by default so tests that make many calls are not throttled; limit tests pass their own.
    limits: {
      rateLimits: { default: { ratePerSecond: 100_000, burst: 100_000 }, roles: {} },
      authFailuresPerMinute: 100_000,
      maxConcurrentRequests: 10_000,
      maxConcurrentRequestsPerPrincipal: 10_000,
      ...limits,
    },
  });
  const http = supertest(app);
  return {
    dir,
    config,
    keys: apiKeys as Required<StarterKeys>,
    opened,
    http,
    as: (principal) => ({ Authorization: `Bearer ${apiKeys[principal]}` }),
    tokenize: async (items) => {
      const res = await http
        .post('/v1/tokenize')
        .set({ Authorization: `Bearer ${apiKeys.billing}` })
        .send({ items });
      if (res.status !== 200) throw new Error(`tokenize answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body.items.map((item: { token: string }) => item.token);
    },
    close: async () => {
      await opened.close();
      rmSync(join(dir, '..'), { recursive: true, force: true });
    },
  };
}
