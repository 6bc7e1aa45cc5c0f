import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiClient, JsonResponse, randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres } from '../helpers/postgres';
import { cli, serve, ServerProcess, StarterKeys } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

/** Load bounds: each worker makes at most this many rounds, and all stop once the scenario is over. */
const WORKERS_PER_INSTANCE = 2;
const MAX_ROUNDS = 400;
const VALUES_PER_REQUEST = 5;

interface Instance {
  name: string;
  server: ServerProcess;
  call: ReturnType<typeof apiClient>;
  killed: boolean;
}

/**
 * A small closed-loop load on loopback: every worker tokenizes on one instance and detokenizes what
 * any instance acknowledged on another, until stopped (or MAX_ROUNDS). Remembers every acknowledged
 * token; a failure counts unless it came from an instance the test killed (a connection error there
 * is expected).
 */
class SpreadLoad {
  readonly issued = new Map<string, string>();
  readonly failures: string[] = [];
  private running = true;
  private readonly workers: Promise<void>[] = [];

  constructor(
    private readonly instances: Instance[],
    private readonly keys: StarterKeys,
  ) {
    instances.forEach((_, i) => {
      for (let w = 0; w < WORKERS_PER_INSTANCE; w++) this.workers.push(this.work(i));
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  private async send(instance: Instance, key: string, path: string, body: object): Promise<JsonResponse | undefined> {
    const res = await instance.call(key, 'POST', path, body).catch((err: Error) => ({ status: 0, body: err.message }));
    if (res.status === 200) return res;
    if (!instance.killed) this.failures.push(`${instance.name} ${path} ${res.status} ${JSON.stringify(res.body)}`);
    return undefined;
  }

  private async work(home: number): Promise<void> {
    for (let round = 0; this.running && round < MAX_ROUNDS; round++) {
      const here = this.instances[home];
      if (here.killed) return;
      const values = Array.from({ length: VALUES_PER_REQUEST }, randomPan);
      const made = await this.send(here, this.keys.billing, '/v1/tokenize', { items: values.map((value) => ({ type: 'pan', value })) });
      made?.body.items.forEach((item: { token: string }, i: number) => this.issued.set(item.token, values[i]));
      const there = this.instances[(home + 1 + (round % 2)) % this.instances.length];
      if (there.killed || this.issued.size === 0) continue;
      const known = [...this.issued.keys()];
      const sample = Array.from({ length: VALUES_PER_REQUEST }, () => known[Math.floor(Math.random() * known.length)]);
      const shown = await this.send(there, this.keys.gateway, '/v1/detokenize', { tokens: sample, purpose: 'charge' });
      shown?.body.items.forEach((item: { token: string; value?: string }) => {
        if (item.value !== this.issued.get(item.token)) this.failures.push(`${there.name} detokenize item ${JSON.stringify(item)}`);
      });
    }
  }
}

describe('e2e / three vault instances on one PostgreSQL database (real processes)', function () {
  this.timeout(120_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let root: string;
  const instances: Instance[] = [];

  before(async function () {
    await requirePostgres(this);
    db = await createTestDatabase();
    root = tempDir();
  });
  after(async () => {
    for (const { server } of instances) await server.stop();
    await db?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('load over all three, one killed with SIGKILL, a rotation on another and a re-encryption job on the third: nothing acknowledged lost, one token per deterministic value, no failure on the survivors, audit intact', async () => {
    const env = { PII_VAULT_DATABASE_URL: db.url };
    const dir = join(root, 'data');
    const init = cli(['init', '--data-dir', dir, '--json'], env);
    expect(init.status, init.stderr).to.equal(0);
    const keys: StarterKeys = JSON.parse(init.stdout).apiKeys;
    const configFile = join(dir, 'config.json');
    const settings = { reencryptBatchSize: 50, reencryptPauseMs: 5, logLevel: 'warn', database: { poolSize: 4 } };
    writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), ...settings }, null, 2));

    for (const name of ['A', 'B', 'C']) {
      const server = await serve(dir, { env });
      instances.push({ name, server, call: apiClient(server.url), killed: false });
    }
    const [a, b, c] = instances;
    // Records under the first data key, for the re-encryption job to move.
    const seeded = Array.from({ length: 300 }, randomPan);
    const seed = await a.call(keys.billing, 'POST', '/v1/tokenize', { items: seeded.map((value) => ({ type: 'pan', value })) });
    expect(seed.status).to.equal(200);

    const load = new SpreadLoad(instances, keys);
    seed.body.items.forEach((item: { token: string }, i: number) => load.issued.set(item.token, seeded[i]));
    try {
      // The same deterministic values on all three at once: one token each.
      const values = Array.from({ length: 20 }, randomPan);
      const answers = await Promise.all(
        instances.map((instance) =>
          instance.call(keys.billing, 'POST', '/v1/tokenize', {
            items: values.map((value) => ({ type: 'pan', value, deterministic: true })),
          }),
        ),
      );
      for (const answer of answers) expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
      const tokens = answers.map((answer) => answer.body.items.map((item: { token: string }) => item.token));
      expect(tokens[1]).to.deep.equal(tokens[0]);
      expect(tokens[2]).to.deep.equal(tokens[0]);
      expect(new Set(tokens[0]).size).to.equal(values.length);
      tokens[0].forEach((token: string, i: number) => load.issued.set(token, values[i]));

      const before = load.issued.size;
      await waitFor(() => load.issued.size >= before + 100, { what: 'load on all three instances' });
      a.killed = true;
      expect(await a.server.stop('SIGKILL')).to.equal(null);

      const rotated = await b.call(keys.security, 'POST', '/v1/keys/rotate', {});
      expect(rotated.status, JSON.stringify(rotated.body)).to.equal(200);
      const started = await c.call(keys.security, 'POST', '/v1/keys/reencrypt', {});
      expect(started.status, JSON.stringify(started.body)).to.be.oneOf([200, 202]);
      const job = await waitFor(
        async () => {
          const res = await c.call(keys.security, 'GET', `/v1/jobs/${started.body.job.id}`);
          return res.body.state !== 'running' && res.body;
        },
        { what: 'the re-encryption job on C to finish', everyMs: 100 },
      );
      expect(job).to.include({ state: 'completed', failed: 0 });
      expect(job.done).to.be.at.least(seeded.length);
      const afterJob = load.issued.size;
      await waitFor(() => load.issued.size >= afterJob + 50, { what: 'load on the survivors after the job' });
    } finally {
      await load.stop();
    }
    expect(load.failures).to.deep.equal([]);

    // Every acknowledged token, from whichever instance, opens on a survivor to its value.
    const issued = [...load.issued];
    const wrong: string[] = [];
    for (let i = 0; i < issued.length; i += 1000) {
      const page = issued.slice(i, i + 1000);
      const shown = await b.call(keys.gateway, 'POST', '/v1/detokenize', { tokens: page.map(([token]) => token), purpose: 'charge' });
      expect(shown.status).to.equal(200);
      shown.body.items.forEach((item: { value?: string }, j: number) => {
        if (item.value !== page[j][1]) wrong.push(JSON.stringify(item));
      });
    }
    expect(wrong).to.deep.equal([]);
    // No instance wrote under the old key after the rotation: the job left none, so it retires.
    const retired = await c.call(keys.security, 'POST', '/v1/keys/1/retire', {});
    expect(retired.status, JSON.stringify(retired.body)).to.equal(200);

    const verify = cli(['audit', 'verify', '--data-dir', dir, '--json'], env);
    expect(verify.status, verify.stderr).to.equal(0);
    expect(JSON.parse(verify.stdout)).to.include({ ok: true });
    expect((await c.call(keys.security, 'GET', '/v1/audit/verify')).body.ok).to.equal(true);
  });
});
