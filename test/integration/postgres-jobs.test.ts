import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import supertest from 'supertest';
import { loadConfig } from '../../src/config';
import { initDataDir, StarterKeys } from '../../src/app/init';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { OpenedVault, openVault } from '../../src/app/open-vault';
import { randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres, sql } from '../helpers/postgres';
import { tempDir } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

type Keys = Required<StarterKeys>;

/** A vault instance that counts the re-encryption batches it commits. */
interface Instance {
  opened: OpenedVault;
  http: ReturnType<typeof supertest>;
  batches: number;
}

const LEASE_MS = 1_000;

async function openInstance(dir: string, url: string): Promise<Instance> {
  const config = loadConfig(dir, {}, { PII_VAULT_DATABASE_URL: url });
  // Small batches with pauses, so that the job spans many lease renewals; a short lease, so that a takeover comes soon.
  Object.assign(config, { reencryptBatchSize: 10, reencryptPauseMs: 100, reencryptLeaseMs: LEASE_MS });
  const opened = await openVault(config, { logger: createLogger('silent') });
  const instance: Instance = { opened, http: supertest(createApp({ vault: opened.vault, logger: createLogger('silent') })), batches: 0 };
  const replace = opened.store.replaceCiphertexts.bind(opened.store);
  opened.store.replaceCiphertexts = async (...args) => {
    const swapped = await replace(...args);
    instance.batches++;
    return swapped;
  };
  return instance;
}

describe('re-encryption jobs on PostgreSQL: one instance at a time, taken over when it dies', function () {
  this.timeout(120_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let dir: string;
  let keys: Keys;
  const instances: Instance[] = [];

  before(async function () {
    await requirePostgres(this);
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    dir = join(tempDir(), 'data');
    keys = (await initDataDir(dir, { env: { PII_VAULT_DATABASE_URL: db.url } })).apiKeys as Keys;
  });
  afterEach(async () => {
    for (const instance of instances.splice(0)) await instance.opened.close().catch(() => undefined);
    await db?.drop();
    if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('two instances resume one job: only the lease holder works on it; when it dies the other finishes it, counts exact', async () => {
    const auth = (principal: keyof Keys) => ({ Authorization: `Bearer ${keys[principal]}` });
    const open = async () => {
      const instance = await openInstance(dir, db.url);
      instances.push(instance);
      return instance;
    };
    const seed = await open();
    const values = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const pans = Array.from({ length: 50 }, () => randomPan());
      const made = await seed.http
        .post('/v1/tokenize')
        .set(auth('billing'))
        .send({ items: pans.map((value) => ({ type: 'pan', value })) });
      expect(made.status).to.equal(200);
      made.body.items.forEach((item: { token: string }, j: number) => values.set(item.token, pans[j]));
    }
    expect((await seed.http.post('/v1/keys/rotate').set(auth('security')).send({})).status).to.equal(200);
    const tenant = (await sql<{ tenant: string }>(db.url, 'SELECT DISTINCT tenant FROM tokens'))[0].tenant;
    // A job left running (its instance is gone): both new instances resume it.
    await seed.opened.store.insertJob({
      id: 'job-1',
      kind: 'reencrypt',
      tenants: [tenant],
      state: 'running',
      total: values.size,
      done: 0,
      failed: 0,
      requestedBy: 'test',
      createdAt: 1,
      updatedAt: 1,
      finishedAt: null,
      error: null,
    });

    const [a, b] = [await open(), await open()];
    await Promise.all([a.opened.vault.jobs.resumeAll(), b.opened.vault.jobs.resumeAll()]);
    await waitFor(() => a.batches + b.batches >= 3, { what: 'a few batches of the job' });
    const [holder, other] = a.batches > 0 ? [a, b] : [b, a];
    expect([holder.batches > 0, other.batches], 'only the lease holder works on the job').to.deep.equal([true, 0]);

    // The holder dies: its connections go, its lease is never released.
    await holder.opened.store.close();
    const job = await waitFor(
      async () =>
        (
          await sql<{ state: string; done: string; failed: string }>(db.url, "SELECT * FROM jobs WHERE id = 'job-1' AND state <> 'running'")
        )[0],
      { what: 'the other instance finishing the job' },
    );
    expect(other.batches, 'the other instance took the job over').to.be.above(0);
    expect([job.state, Number(job.done), Number(job.failed)]).to.deep.equal(['completed', values.size, 0]);

    // Every record moved exactly once: one seal each under v2, counts exact, each token opens to its value.
    const usage = await sql<{ version: number; encryptions: string }>(
      db.url,
      'SELECT version, encryptions FROM data_key_usage WHERE tenant = $1',
      [tenant],
    );
    expect(Number(usage.find((u) => u.version === 2)?.encryptions)).to.equal(values.size);
    const counts = await sql<{ key_version: number; records: string }>(
      db.url,
      'SELECT key_version, records FROM record_counts WHERE tenant = $1 AND records <> 0',
      [tenant],
    );
    expect(counts.map((c) => [c.key_version, Number(c.records)])).to.deep.equal([[2, values.size]]);
    const tokens = [...values.keys()];
    for (let i = 0; i < tokens.length; i += 100) {
      const page = tokens.slice(i, i + 100);
      const res = await other.http.post('/v1/detokenize').set(auth('gateway')).send({ tokens: page, purpose: 'charge' });
      expect(res.status).to.equal(200);
      expect(res.body.items.map((item: { value: string }) => item.value)).to.deep.equal(page.map((t) => values.get(t)));
    }
    expect((await other.opened.audit.verify({ full: true })).ok).to.equal(true);
  });
});
