import { expect } from 'chai';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiClient, randomPan } from '../helpers/load';
import { createTestDatabase, requirePostgres } from '../helpers/postgres';
import { cli, serve, ServerProcess } from '../helpers/processes';
import { createTestVault } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

const TENANTS = ['default', 'acme'];
const AUDIT_ROWS_APPENDED = 3_000;

/**
 * The source as migrate must leave it: the database file's bytes, and no write-ahead log frames (a
 * read-only reader may only create SQLite's empty -wal/-shm side files to read a WAL-mode file).
 */
function fingerprintFiles(dir: string): string {
  const wal = join(dir, 'vault.db-wal');
  return createHash('sha256')
    .update(readFileSync(join(dir, 'vault.db')))
    .update(existsSync(wal) ? readFileSync(wal) : '')
    .digest('hex');
}

describe('e2e / pii-vault migrate: embedded SQLite vault → PostgreSQL (real processes)', function () {
  this.timeout(180_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let server: ServerProcess | undefined;
  let root: string | undefined;

  before(async function () {
    await requirePostgres(this);
    db = await createTestDatabase();
  });
  after(async () => {
    await server?.stop();
    await db?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('copies records of several tenants, rotated keys, a half-done job and a long archived audit chain; every old token is served from PostgreSQL', async () => {
    // A source vault with everything migrate must carry over.
    const vault = await createTestVault({}, { settings: { reencryptBatchSize: 20, reencryptPauseMs: 3_000 } });
    const dir = vault.dir;
    root = join(dir, '..');
    const policyFile = join(dir, 'policy.json');
    const policy = JSON.parse(readFileSync(policyFile, 'utf8'));
    for (const who of ['billing', 'gateway']) policy.principals[who].tenants = TENANTS;
    writeFileSync(policyFile, JSON.stringify(policy, null, 2));
    vault.opened.reloadPolicy();

    const issued: { tenant: string; token: string; value: string; item?: object }[] = [];
    const deterministic: { tenant: string; token: string; value: string; item?: object }[] = [];
    for (const tenant of TENANTS) {
      for (let batch = 0; batch < 3; batch++) {
        const values = Array.from({ length: 40 }, randomPan);
        const items = values.map((value, i) => ({
          type: 'pan',
          value,
          deterministic: i % 4 === 0,
          ...(i % 3 === 0 ? { subject: `customer-${batch}-${i}` } : {}),
          ...(i % 5 === 0 ? { metadata: { batch, i, card: 'visa' } } : {}),
          ...(i % 7 === 0 ? { ttlSeconds: 86_400 } : {}),
        }));
        const made = await vault.http.post('/v1/tokenize').set(vault.as('billing')).send({ tenant, items });
        expect(made.status, JSON.stringify(made.body)).to.equal(200);
        const tokens: string[] = made.body.items.map((item: { token: string }) => item.token);
        tokens.forEach((token, i) =>
          (items[i].deterministic ? deterministic : issued).push({ tenant, token, value: values[i], item: items[i] }),
        );
      }
      if (tenant === 'default') {
        // Records under two data key versions: rotate, then a re-encryption that stops part way.
        const rotated = await vault.http.post('/v1/keys/rotate').set(vault.as('security')).send({ tenant });
        expect(rotated.status, JSON.stringify(rotated.body)).to.equal(200);
        const job = await vault.http.post('/v1/keys/reencrypt').set(vault.as('security')).send({ tenant });
        expect(job.status, JSON.stringify(job.body)).to.be.oneOf([200, 202]);
        const id = job.body.job.id;
        await waitFor(async () => ((await vault.opened.store.job(id))?.done ?? 0) >= 20, { what: 'a first re-encryption batch' });
      }
    }
    const appends = Array.from({ length: AUDIT_ROWS_APPENDED }, (_, i) =>
      vault.opened.audit.append({
        ts: new Date().toISOString(),
        requestId: `migrate-test-${i}`,
        principal: 'billing',
        tenant: TENANTS[i % 2],
        action: 'tokenize',
        types: ['pan'],
        // Long lists are deflated in SQLite (audit-list-codec) and JSON text in PostgreSQL.
        tokens: i % 100 === 0 ? issued.slice(0, 100).map((r) => r.token) : [issued[i % issued.length].token],
        purpose: null,
        outcome: 'allow',
        reason: null,
        subjects: [],
      }),
    );
    await Promise.all(appends);
    await vault.opened.audit.archive(500, join(root, 'archive-1.jsonl'));
    expect((await vault.opened.audit.verify()).ok).to.equal(true); // leaves a checkpoint
    await vault.opened.close();
    const sourceBefore = fingerprintFiles(dir);

    const migrated = cli(['migrate', '--data-dir', dir, '--to', db.url, '--json'], { PII_VAULT_DATABASE_URL: '' });
    expect(migrated.status, migrated.stderr + migrated.stdout).to.equal(0);
    const summary = JSON.parse(migrated.stdout);
    expect(summary.ok).to.equal(true);
    expect(summary.tables.tokens).to.deep.equal({
      source: issued.length + deterministic.length,
      target: issued.length + deterministic.length,
    });
    for (const table of Object.keys(summary.tables)) expect(summary.tables[table].target, table).to.equal(summary.tables[table].source);
    expect(summary.tables.data_keys.source).to.be.greaterThan(4);
    expect(summary.tables.jobs.source).to.equal(1);
    expect(summary.tables.audit_segments.source).to.equal(1);
    expect(summary.tables.audit.source).to.be.greaterThan(AUDIT_ROWS_APPENDED - 500);
    expect(summary.sample.matched).to.equal(summary.sample.checked);
    expect(summary.sample.checked).to.equal(200);
    expect(summary.audit).to.include({ ok: true, archivedThrough: 499 });
    expect(fingerprintFiles(dir)).to.equal(sourceBefore);

    const env = { PII_VAULT_DATABASE_URL: db.url };
    server = await serve(dir, { env });
    const call = apiClient(server.url);
    for (const tenant of TENANTS) {
      const mine = [...issued, ...deterministic].filter((r) => r.tenant === tenant);
      const shown = await call(vault.keys.gateway, 'POST', '/v1/detokenize', {
        tokens: mine.map((r) => r.token),
        tenant,
        purpose: 'charge',
      });
      expect(shown.status, JSON.stringify(shown.body)).to.equal(200);
      expect(shown.body.items.map((item: { value?: string }) => item.value)).to.deep.equal(mine.map((r) => r.value));
      const again = deterministic.filter((r) => r.tenant === tenant);
      const retokenized = await call(vault.keys.billing, 'POST', '/v1/tokenize', {
        tenant,
        // The same request again (a deterministic token keeps its TTL, subject and metadata).
        items: again.map((r) => r.item),
      });
      expect(retokenized.status, JSON.stringify(retokenized.body)).to.equal(200);
      expect(retokenized.body.items.map((item: { token: string }) => item.token)).to.deep.equal(again.map((r) => r.token));
    }
    // The half-done job resumed on PostgreSQL finishes the re-encryption there.
    await server.stop();
    server = undefined;

    const verify = cli(['audit', 'verify', '--data-dir', dir, '--json'], env);
    expect(verify.status, verify.stderr).to.equal(0);
    const verified = JSON.parse(verify.stdout);
    expect(verified).to.include({ ok: true, archivedThrough: 499 });
    // The rows the PostgreSQL server appended continue the copied chain (its head was carried over).
    expect(verified.rows).to.be.greaterThan(summary.audit.rows);

    // Into a database that now holds a vault: refused, naming it without its password.
    const withPassword = new URL(db.url);
    withPassword.password = 'not-shown-anywhere';
    const second = cli(['migrate', '--data-dir', dir, '--to', withPassword.toString()], { PII_VAULT_DATABASE_URL: '' });
    expect(second.status).to.equal(1);
    expect(second.stderr, second.stderr).to.contain(`/${db.name} is not empty`);
    expect(second.stderr).to.contain(':***@');
    expect(second.stderr + second.stdout).not.to.contain('not-shown-anywhere');
    expect(fingerprintFiles(dir)).to.equal(sourceBefore);

    // A data dir already pointed at PostgreSQL has no embedded vault to copy.
    const configured = cli(['migrate', '--data-dir', dir, '--to', db.url], env);
    expect(configured.status).to.equal(1);
    expect(configured.stderr).to.contain('this vault is configured for PostgreSQL already');

    // A source not yet at this release's schema is refused before anything is copied.
    const old = join(root, 'old');
    cpSync(dir, old, { recursive: true });
    const file = new Database(join(old, 'vault.db'));
    file.prepare('DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)').run();
    file.close();
    const refused = cli(['migrate', '--data-dir', old, '--to', 'postgres://nobody@127.0.0.1:1/none'], { PII_VAULT_DATABASE_URL: '' });
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(
      /has schema version \d+, this release writes \d+: start the vault once with this release, then migrate/,
    );
  });
});
