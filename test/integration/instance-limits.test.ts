import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import supertest from 'supertest';
import { loadConfig } from '../../src/config';
import { initDataDir, StarterKeys } from '../../src/app/init';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { OpenedVault, openVault } from '../../src/app/open-vault';
import { createTestDatabase, requirePostgres } from '../helpers/postgres';
import { tempDir } from '../helpers/test-vault';

type Keys = Required<StarterKeys>;

/**
 * README ("Running several instances"): rate limits and the failed-authentication brake are kept
 * in each instance's memory, so N instances behind a load balancer allow N times the configured
 * figures. This pins that choice: two instances of one vault (one database) count apart.
 */
describe('rate limits and the auth-failure brake are per instance', function () {
  this.timeout(60_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let dir: string;
  let keys: Keys;
  const opened: OpenedVault[] = [];

  const instance = async () => {
    const vault = await openVault(loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: db.url }), { logger: createLogger('silent') });
    opened.push(vault);
    const app = createApp({
      vault: vault.vault,
      logger: createLogger('silent'),
      limits: {
        // A bucket refilled far slower than the test runs: only the burst counts.
        rateLimits: { default: { ratePerSecond: 0.001, burst: 3 }, roles: {} },
        authFailuresPerMinute: 3,
        maxConcurrentRequests: 100,
        maxConcurrentRequestsPerPrincipal: 100,
      },
    });
    return supertest(app);
  };

  before(async function () {
    await requirePostgres(this);
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    dir = join(tempDir(), 'data');
    keys = (await initDataDir(dir, { env: { PII_VAULT_DATABASE_URL: db.url } })).apiKeys as Keys;
  });
  afterEach(async () => {
    for (const vault of opened.splice(0)) await vault.close();
    await db?.drop();
    if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('a principal over its rate limit on one instance is still served its own burst by another', async () => {
    const [a, b] = [await instance(), await instance()];
    const tokenize = (http: typeof a) =>
      http
        .post('/v1/tokenize')
        .set({ Authorization: `Bearer ${keys.billing}` })
        .send({ items: [{ type: 'text', value: 'x' }] })
        .then((res) => res.status);
    const onA = [];
    for (let i = 0; i < 4; i++) onA.push(await tokenize(a));
    expect(onA).to.deep.equal([200, 200, 200, 429]);
    const onB = [];
    for (let i = 0; i < 4; i++) onB.push(await tokenize(b));
    expect(onB, 'the other instance keeps its own bucket').to.deep.equal([200, 200, 200, 429]);
  });

  it('an address braked for failed authentications on one instance gets 401, not 429, from another until it fails there too', async () => {
    const [a, b] = [await instance(), await instance()];
    const fail = (http: typeof a) =>
      http
        .post('/v1/tokenize')
        .set({ Authorization: 'Bearer pvk_wrong' })
        .send({ items: [{ type: 'text', value: 'x' }] })
        .then((res) => res.status);
    const onA = [];
    for (let i = 0; i < 4; i++) onA.push(await fail(a));
    expect(onA).to.deep.equal([401, 401, 401, 429]);
    const onB = [];
    for (let i = 0; i < 4; i++) onB.push(await fail(b));
    expect(onB, 'the other instance counts apart').to.deep.equal([401, 401, 401, 429]);
  });
});
