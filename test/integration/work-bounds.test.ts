import { expect } from 'chai';
import Database from 'better-sqlite3';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite-migrations';
import { AUDIT_AFTER_OF_TENANT_SQL, SqliteStore } from '../../src/store/sqlite-store';
import { createTestVault, tempDir, TestVault } from '../helpers/test-vault';

/** Issue 10, item 12: work that grows with the data stays off the request path or is cut into turns. */
describe('work bounded per request: record counts, audit index, detokenize turns', () => {
  let v: TestVault;
  afterEach(() => v?.close());

  /** The counts as a full GROUP BY sees them: what the kept counts must always equal. */
  const countedNow = (store: SqliteStore) =>
    new Map(
      (
        store.db.prepare('SELECT tenant, key_version AS version, count(*) AS n FROM tokens GROUP BY tenant, key_version').all() as {
          tenant: string;
          version: number;
          n: number;
        }[]
      ).map((r) => [`${r.tenant}/${r.version}`, r.n]),
    );
  const expectExact = async (store: SqliteStore, expected: Record<string, number>) => {
    const kept = await store.recordCountsByKey();
    expect(Object.fromEntries(kept)).to.deep.equal(expected);
    expect(kept).to.deep.equal(countedNow(store));
  };

  it('keeps record counts exact through insert, delete, deterministic replacement and re-encryption, without counting', async () => {
    v = await createTestVault();
    const store = v.opened.store;
    const tokens = await v.tokenize(Array.from({ length: 12 }, (_, i) => ({ type: 'text', value: `v${i}` })));
    await expectExact(store, { 'default/1': 12 });

    expect((await v.http.delete(`/v1/tokens/${tokens[0]}`).set(v.as('billing'))).status).to.equal(204);
    expect((await v.http.delete(`/v1/tokens/${tokens[1]}`).set(v.as('billing'))).status).to.equal(204);
    await expectExact(store, { 'default/1': 10 });

    // A deterministic token that expired is deleted and replaced in one transaction: still one record.
    const item = { type: 'pan', value: '4111111111111111', ttlSeconds: 60, deterministic: true };
    const [first] = await v.tokenize([item]);
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 61_000;
    const [second] = await v.tokenize([item]);
    v.opened.vault.deps.now = realNow;
    expect(second).not.to.equal(first);
    await expectExact(store, { 'default/1': 11 });

    expect((await v.http.post('/v1/keys/rotate').set(v.as('security')).send({})).status).to.equal(200);
    await v.tokenize([{ type: 'text', value: 'under v2' }]);
    await expectExact(store, { 'default/1': 11, 'default/2': 1 });
    const job = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
    await v.opened.vault.jobs.settled(job.body.job.id);
    await expectExact(store, { 'default/2': 12 });

    const keys = await v.http.get('/v1/keys').set(v.as('security'));
    const records = keys.body.keys.filter((k: { purpose: string }) => k.purpose === 'data').map((k: { records: number }) => k.records);
    expect(records).to.deep.equal([0, 12]);

    // The counts are read from their own table: with the tokens table out of reach, they still answer.
    store.db.exec('ALTER TABLE tokens RENAME TO tokens_hidden');
    try {
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 'default/2': 12 });
    } finally {
      store.db.exec('ALTER TABLE tokens_hidden RENAME TO tokens');
    }
  });

  it('the migration fills the counts of a database that already holds records', async () => {
    const file = join(tempDir(), 'old.db');
    const db = new Database(file);
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 2)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(m.version, 'then');
    }
    const insert = db.prepare(
      `INSERT INTO tokens (token, tenant, type, format, key_version, nonce, ciphertext, tag, created_at)
       VALUES (?, ?, 'text', 'random', ?, x'00', x'00', x'00', 0)`,
    );
    for (let i = 0; i < 5; i++) insert.run(`a${i}`, 'acme', 1);
    for (let i = 0; i < 3; i++) insert.run(`b${i}`, 'acme', 2);
    insert.run('c0', 'other', 1);
    db.close();
    const store = new SqliteStore(file);
    try {
      await expectExact(store, { 'acme/1': 5, 'acme/2': 3, 'other/1': 1 });
      expect(store.db.prepare('SELECT tenant, key_version, records FROM record_counts ORDER BY tenant, key_version').all()).to.deep.equal([
        { tenant: 'acme', key_version: 1, records: 5 },
        { tenant: 'acme', key_version: 2, records: 3 },
        { tenant: 'other', key_version: 1, records: 1 },
      ]);
    } finally {
      await store.close();
    }
  });

  it('reads a tenant’s audit rows through the (tenant, seq) index, in order and paged', async () => {
    v = await createTestVault();
    const store = v.opened.store;
    const plan = store.db.prepare(`EXPLAIN QUERY PLAN ${AUDIT_AFTER_OF_TENANT_SQL}`).all('default', 0, 10) as { detail: string }[];
    expect(plan.map((p) => p.detail).join('\n')).to.match(/SEARCH audit USING (COVERING )?INDEX audit_tenant_seq \(tenant=\? AND seq>\?\)/);

    await v.tokenize([{ type: 'text', value: 'a' }]);
    await v.http.get('/v1/keys').set(v.as('security'));
    await v.tokenize([{ type: 'text', value: 'b' }]);
    await v.tokenize([{ type: 'text', value: 'c' }]);
    const all = await store.auditRows(0, 1000);
    const ofDefault = all.filter((r) => r.tenant === 'default').map((r) => r.seq);
    expect((await store.auditRows(0, 1000, ['default'])).map((r) => r.seq)).to.deep.equal(ofDefault);
    expect((await store.auditRows(ofDefault[0], 2, ['default', 'default'])).map((r) => r.seq)).to.deep.equal(ofDefault.slice(1, 3));
    expect(await store.auditRows(0, 10, [])).to.deep.equal([]);
  });

  it('a health probe sent while a 1,000-token detokenize is being opened is answered before it', async () => {
    v = await createTestVault();
    const tokens: string[] = [];
    for (let b = 0; b < 4; b++)
      tokens.push(...(await v.tokenize(Array.from({ length: 250 }, () => ({ type: 'text', value: 'x '.repeat(1000) })))));
    const server = http.createServer(createApp({ vault: v.opened.vault, logger: createLogger('silent') }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const order: string[] = [];
    const get = (path: string, options: http.RequestOptions = {}, body?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path, agent: false, ...options }, (res) => {
          res.resume();
          res.on('end', () => {
            order.push(path);
            resolve(res.statusCode!);
          });
        });
        req.on('error', reject);
        req.end(body);
      });
    // The probe leaves when the detokenize opens its first value.
    const keys = v.opened.keys;
    const keyVersion = keys.keyVersion.bind(keys);
    let probe: Promise<number> | undefined;
    keys.keyVersion = (...args: Parameters<typeof keys.keyVersion>) => {
      probe ??= get('/healthz');
      return keyVersion(...args);
    };
    try {
      const body = JSON.stringify({ tokens, reveal: 'masked' });
      const detokenize = get(
        '/v1/detokenize',
        { method: 'POST', headers: { ...v.as('support'), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
        body,
      );
      expect(await detokenize).to.equal(200);
      expect(await probe).to.equal(200);
      expect(order).to.deep.equal(['/healthz', '/v1/detokenize']);
    } finally {
      keys.keyVersion = keyVersion;
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
