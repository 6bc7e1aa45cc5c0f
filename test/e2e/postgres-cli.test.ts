import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres } from '../helpers/postgres';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';

describe('e2e / PostgreSQL through the CLI (real processes)', function () {
  this.timeout(120_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let root: string;
  const servers: ServerProcess[] = [];

  before(async function () {
    await requirePostgres(this);
    db = await createTestDatabase();
    root = tempDir();
  });
  after(async () => {
    for (const server of servers) await server.stop();
    await db?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('init with PII_VAULT_DATABASE_URL; a second init refuses naming the database; two serve processes are one vault; audit verify', async () => {
    const env = { PII_VAULT_DATABASE_URL: db.url };
    const dir = join(root, 'data');
    const init = cli(['init', '--data-dir', dir, '--json'], env);
    expect(init.status, init.stderr).to.equal(0);
    const keys = JSON.parse(init.stdout).apiKeys;
    const again = cli(['init', '--data-dir', join(root, 'other'), '--json'], env);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.contain(`the database ${db.url} already holds a vault`);

    servers.push(await serve(dir, { env }), await serve(dir, { env }));
    const call = (server: ServerProcess, key: string, path: string, body: object) =>
      fetch(server.url + path, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as any }));
    for (let i = 0; i < 10; i++) {
      const pan = randomPan();
      const made = await call(servers[i % 2], keys.billing, '/v1/tokenize', { items: [{ type: 'pan', value: pan }] });
      expect(made.status).to.equal(200);
      const shown = await call(servers[(i + 1) % 2], keys.gateway, '/v1/detokenize', {
        tokens: [made.body.items[0].token],
        purpose: 'charge',
      });
      expect(shown.body.items[0].value).to.equal(pan);
    }
    const verify = cli(['audit', 'verify', '--data-dir', dir, '--json'], env);
    expect(verify.status, verify.stderr).to.equal(0);
    expect(JSON.parse(verify.stdout)).to.include({ ok: true });
    expect(JSON.parse(verify.stdout).rows).to.be.greaterThan(20);
  });
});
