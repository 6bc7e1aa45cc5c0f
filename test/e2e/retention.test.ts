import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiClient, randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres, sql } from '../helpers/postgres';
import { cli, initVault, serve, ServerProcess } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

/** Card numbers tokenized one second before they expire (the type's default lifetime). */
const RETENTION = { pan: { defaultTtlSeconds: 1 } };

describe('e2e / retention: pii-vault purge and the background purge (real processes)', function () {
  this.timeout(120_000);
  let root: string;
  const servers: ServerProcess[] = [];
  beforeEach(() => {
    root = tempDir();
  });
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('pii-vault purge --dry-run counts what is expired and deletes nothing; purge deletes it and prints the counts', async () => {
    const dir = join(root, 'data');
    const keys = initVault(dir, { retention: RETENTION, purgeIntervalSeconds: 0 });
    const server = await serve(dir);
    servers.push(server);
    const call = apiClient(server.url);
    const made = await call(keys.billing, 'POST', '/v1/tokenize', {
      items: [...Array.from({ length: 3 }, () => ({ type: 'pan', value: randomPan() })), { type: 'email', value: 'jane@example.com' }],
    });
    expect(made.status).to.equal(200);
    const tokens: string[] = made.body.items.map((item: { token: string }) => item.token);
    const codes = async () =>
      (await call(keys.gateway, 'POST', '/v1/detokenize', { tokens: tokens.slice(0, 3), purpose: 'charge' })).body.items.map(
        (item: { error?: { code: string } }) => item.error?.code,
      );
    await waitFor(async () => (await codes()).every((code: string) => code === 'expired'), { what: 'the cards to expire' });

    const dry = cli(['purge', '--data-dir', dir, '--dry-run']);
    expect(dry.status, dry.stderr).to.equal(0);
    expect(dry.stdout).to.equal('dry run: 3 expired records would be purged (default/pan 3); nothing was deleted\n');
    expect(await codes(), 'nothing deleted').to.deep.equal(['expired', 'expired', 'expired']);

    const purge = cli(['purge', '--data-dir', dir, '--json']);
    expect(purge.status, purge.stderr).to.equal(0);
    expect(JSON.parse(purge.stdout)).to.deep.equal({ dryRun: false, purged: 3, counts: [{ tenant: 'default', type: 'pan', records: 3 }] });
    expect(await codes()).to.deep.equal(['not_found', 'not_found', 'not_found']);
    const again = cli(['purge', '--data-dir', dir]);
    expect(again.stdout).to.equal('purged 0 expired records\n');

    const audit = await call(keys.security, 'GET', '/v1/audit?limit=1000');
    const rows = audit.body.items.filter((row: { action: string }) => row.action.startsWith('retention:'));
    expect(rows.map((row: { action: string; reason: string }) => `${row.action}: ${row.reason}`)).to.deep.equal([
      'retention:purge-dry-run: 3 expired records would be purged: default/pan 3',
      'retention:purge: purged 3 expired records: default/pan 3',
    ]);
    expect(JSON.stringify(rows)).not.to.include(tokens[0]);
  });

  it('two instances on one PostgreSQL database: the background purge deletes and audits each expired record once', async function () {
    await requirePostgres(this);
    const db = await createTestDatabase();
    try {
      const env = { PII_VAULT_DATABASE_URL: db.url };
      const dir = join(root, 'data');
      const init = cli(['init', '--data-dir', dir, '--json'], env);
      expect(init.status, init.stderr).to.equal(0);
      const keys = JSON.parse(init.stdout).apiKeys;
      const configFile = join(dir, 'config.json');
      const settings = { retention: RETENTION, purgeIntervalSeconds: 1, purgeBatchSize: 4 };
      writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), ...settings }, null, 2));
      for (let i = 0; i < 2; i++) servers.push(await serve(dir, { env }));
      const [a, b] = servers.map((server) => apiClient(server.url));

      for (const [instance, n] of [
        [a, 10],
        [b, 7],
      ] as const) {
        const made = await instance(keys.billing, 'POST', '/v1/tokenize', {
          items: Array.from({ length: n }, () => ({ type: 'pan', value: randomPan() })),
        });
        expect(made.status).to.equal(200);
      }
      await a(keys.billing, 'POST', '/v1/tokenize', { items: [{ type: 'email', value: 'jane@example.com' }] });
      await waitFor(async () => Number((await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM tokens'))[0].n) === 1, {
        what: 'the background purge to delete the 17 expired cards',
      });

      const rows = await sql<{ principal: string; reason: string; tokens: string }>(
        db.url,
        "SELECT principal, reason, tokens FROM audit WHERE action = 'retention:purge' ORDER BY seq",
      );
      const audited = rows.reduce((n, row) => n + Number(/^purged (\d+) expired records: default\/pan \1$/.exec(row.reason)![1]), 0);
      expect(audited, 'every purged record in exactly one audit row').to.equal(17);
      expect(rows.every((row) => row.principal === 'system' && row.tokens === '[]')).to.equal(true);
      const logged = () =>
        servers
          .flatMap((server) => server.output().split('\n'))
          .filter((line) => line.includes('expired records purged'))
          .reduce((n, line) => n + JSON.parse(line).purged, 0);
      // A run logs its total after its last batch has found nothing more: a little after the deletions are visible.
      await waitFor(() => logged() >= 17, { what: 'the purge runs to log their counts' });
      expect(logged(), 'the instances logged 17 purged in all').to.equal(17);

      const dry = cli(['purge', '--data-dir', dir, '--dry-run', '--json'], env);
      expect(dry.status, dry.stderr).to.equal(0);
      expect(JSON.parse(dry.stdout)).to.deep.equal({ dryRun: true, purged: 0, counts: [] });
      const verify = cli(['audit', 'verify', '--data-dir', dir, '--json'], env);
      expect(JSON.parse(verify.stdout)).to.include({ ok: true });
    } finally {
      for (const server of servers.splice(0)) await server.stop();
      await db.drop();
    }
  });
});
