import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import supertest from 'supertest';
import { loadConfig } from '../../src/config';
import { createApp } from '../../src/http/app';
import { initDataDir, StarterKeys } from '../../src/app/init';
import { createLogger } from '../../src/logger';
import { OpenedVault, openVault } from '../../src/app/open-vault';
import { PostgresStore } from '../../src/store/postgres-store';
import { randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres, sql } from '../helpers/postgres';
import { TcpProxy } from '../helpers/tcp-proxy';
import { tempDir } from '../helpers/test-vault';

type Keys = Required<StarterKeys>;

interface Instance {
  opened: OpenedVault;
  http: ReturnType<typeof supertest>;
}

/** One vault instance (its own pool) on the data dir and database, served in-process. */
async function openInstance(dir: string, url: string): Promise<Instance> {
  const config = loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: url });
  // Short waits, so that an outage is answered quickly (the defaults suit production).
  config.database = { ...config.database, connectTimeoutMs: 1_000, statementTimeoutMs: 3_000 };
  const logger = createLogger('silent');
  const opened = await openVault(config, { logger });
  expect(opened.store).to.be.instanceOf(PostgresStore);
  const app = createApp({
    vault: opened.vault,
    logger,
    limits: {
      rateLimits: { default: { ratePerSecond: 100_000, burst: 100_000 }, roles: {} },
      authFailuresPerMinute: 100_000,
      maxConcurrentRequests: 10_000,
      maxConcurrentRequestsPerPrincipal: 10_000,
    },
  });
  return { opened, http: supertest(app) };
}

describe('vault on PostgreSQL (real server)', function () {
  this.timeout(120_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let dir: string;
  let keys: Keys;
  const instances: Instance[] = [];
  const auth = (principal: keyof Keys) => ({ Authorization: `Bearer ${keys[principal]}` });
  const open = async (url = db.url) => {
    const instance = await openInstance(dir, url);
    instances.push(instance);
    return instance;
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
    for (const instance of instances.splice(0)) await instance.opened.close();
    await db?.drop();
    if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('init put the schema and the vault in the database, not in the data dir; a second init against it refuses, naming it', async () => {
    expect(Number((await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM data_keys'))[0].n)).to.be.greaterThan(0);
    const other = join(tempDir(), 'data');
    const err = await initDataDir(other, { env: { PII_VAULT_DATABASE_URL: db.url } }).catch((e) => e);
    expect(err.message).to.contain(`database ${db.url} already holds a vault`);
  });

  it('two instances are one vault: a token made on one detokenizes on the other at once; a deterministic value gets one token', async () => {
    const [a, b] = [await open(), await open()];
    for (let i = 0; i < 20; i++) {
      const pan = randomPan();
      const made = await a.http
        .post('/v1/tokenize')
        .set(auth('billing'))
        .send({ items: [{ type: 'pan', value: pan }] });
      expect(made.status).to.equal(200);
      const shown = await b.http
        .post('/v1/detokenize')
        .set(auth('gateway'))
        .send({ tokens: [made.body.items[0].token], purpose: 'charge' });
      expect(shown.body.items[0].value).to.equal(pan);
    }
    const pan = randomPan();
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 ? a : b).http
          .post('/v1/tokenize')
          .set(auth('billing'))
          .send({ items: [{ type: 'pan', value: pan, deterministic: true }] }),
      ),
    );
    expect(answers.map((r) => r.status)).to.deep.equal(answers.map(() => 200));
    expect(new Set(answers.map((r) => r.body.items[0].token)).size).to.equal(1);
    expect((await a.opened.audit.verify({ full: true })).ok).to.equal(true);
  });

  it('consent withdrawn on one instance blocks detokenize on the other at once; an erasure there is seen here at once', async () => {
    const [a, b] = [await open(), await open()];
    const charge = (instance: Instance, token: string) =>
      instance.http
        .post('/v1/detokenize')
        .set(auth('gateway'))
        .send({ tokens: [token], purpose: 'charge' });
    const made = await a.http
      .post('/v1/tokenize')
      .set(auth('billing'))
      .send({ purposes: ['charge'], items: [{ type: 'pan', value: randomPan(), subject: 'cust-pg-1' }] });
    const token = made.body.items[0].token;
    expect((await charge(b, token)).body.items[0].reveal).to.equal('plain');
    const withdrawn = await a.http
      .post('/v1/subjects/consent')
      .set(auth('billing'))
      .send({ subject: 'cust-pg-1', withdraw: ['charge'] });
    expect(withdrawn.body.consentedPurposes).to.deep.equal([]);
    expect((await charge(b, token)).body.items[0]).to.deep.equal({ token, error: { code: 'forbidden', reason: 'consent_not_given' } });
    await b.http
      .post('/v1/subjects/consent')
      .set(auth('billing'))
      .send({ subject: 'cust-pg-1', grant: ['charge'] });
    expect((await charge(a, token)).body.items[0].reveal).to.equal('plain');

    const erased = await b.http.post('/v1/subjects/erase').set(auth('security')).send({ subject: 'cust-pg-1' });
    expect(erased.body).to.deep.equal({ tenant: 'default', erased: { records: 1 } });
    expect((await charge(a, token)).body.items[0]).to.deep.equal({ token, error: { code: 'not_found' } });
    expect(Number((await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM subjects'))[0].n)).to.equal(0);
    expect((await a.opened.audit.verify({ full: true })).ok).to.equal(true);
  });

  it('a rotation made on one instance is used for new records by the other, which still holds the old key in its cache', async () => {
    const [a, b] = [await open(), await open()];
    const first = await b.http
      .post('/v1/tokenize')
      .set(auth('billing'))
      .send({ items: [{ type: 'pan', value: randomPan() }] });
    expect(first.status).to.equal(200);
    const rotated = await a.http.post('/v1/keys/rotate').set(auth('security')).send({});
    expect(rotated.status, JSON.stringify(rotated.body)).to.equal(200);
    const next = await b.http
      .post('/v1/tokenize')
      .set(auth('billing'))
      .send({ items: [{ type: 'pan', value: randomPan() }] });
    expect(next.status).to.equal(200);
    const versions = await sql<{ token: string; key_version: number }>(db.url, 'SELECT token, key_version FROM tokens');
    const version = (token: string) => versions.find((r) => r.token === token)!.key_version;
    expect([version(first.body.items[0].token), version(next.body.items[0].token)]).to.deep.equal([1, 2]);
  });

  it('database outage under load: 503 store_unavailable (never a 500 or a wrong answer), nothing acknowledged lost, back by itself', async () => {
    const proxy = await new TcpProxy('127.0.0.1', Number(new URL(db.url).port || 5432)).start();
    try {
      const v = await open(proxy.route(db.url));
      const acknowledged = new Map<string, string>();
      const statuses = new Map<string, number>();
      const seen = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1);
      let running = true;
      const worker = async () => {
        while (running) {
          const pan = randomPan();
          const res = await v.http
            .post('/v1/tokenize')
            .set(auth('billing'))
            .send({ items: [{ type: 'pan', value: pan }] });
          seen(`tokenize ${res.status} ${res.body?.error?.code ?? ''}`.trim());
          if (res.status === 200) acknowledged.set(res.body.items[0].token, pan);
          const [token, value] = [...acknowledged][Math.floor(Math.random() * acknowledged.size)] ?? [];
          if (!token) continue;
          const read = await v.http
            .post('/v1/detokenize')
            .set(auth('gateway'))
            .send({ tokens: [token], purpose: 'charge' });
          seen(`detokenize ${read.status} ${read.body?.error?.code ?? ''}`.trim());
          if (read.status === 200) expect(read.body.items[0].value, 'a detokenize answered the wrong value').to.equal(value);
        }
      };
      const until = async (what: string, check: () => boolean | Promise<boolean>) => {
        for (let i = 0; i < 300 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 100));
        expect(await check(), what).to.equal(true);
      };
      const workers = Array.from({ length: 6 }, worker);
      await until('some tokens acknowledged before the cut', () => acknowledged.size >= 30);
      proxy.cut();
      const before503 = statuses.get('tokenize 503 store_unavailable') ?? 0;
      await until('503 store_unavailable during the cut', () => (statuses.get('tokenize 503 store_unavailable') ?? 0) > before503 + 10);
      const ready = await v.http.get('/readyz');
      expect(ready.status).to.equal(503);
      expect(ready.body.checks.database).to.equal('unavailable');
      const acknowledgedAtRestore = acknowledged.size;
      proxy.restore();
      await until('tokenize succeeds again without a restart', () => acknowledged.size >= acknowledgedAtRestore + 30);
      running = false;
      await Promise.all(workers);
      expect((await v.http.get('/readyz')).status).to.equal(200);
      // A detokenize whose audit row could not be written says so (audit_unavailable, as on SQLite): fail closed, no value.
      const expected = /^(tokenize (200|503 store_unavailable)|detokenize (200|503 store_unavailable|503 audit_unavailable))$/;
      const unexpected = [...statuses.keys()].filter((k) => !expected.test(k));
      expect(unexpected, JSON.stringify([...statuses])).to.deep.equal([]);
      // Every acknowledged token is stored and opens to its value.
      const tokens = [...acknowledged.keys()];
      for (let i = 0; i < tokens.length; i += 100) {
        const page = tokens.slice(i, i + 100);
        const res = await v.http.post('/v1/detokenize').set(auth('gateway')).send({ tokens: page, purpose: 'charge' });
        expect(res.status).to.equal(200);
        expect(res.body.items.map((item: { value: string }) => item.value)).to.deep.equal(page.map((t) => acknowledged.get(t)));
      }
      expect((await v.opened.audit.verify({ full: true })).ok).to.equal(true);
    } finally {
      await proxy.stop();
    }
  });
});
