import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Caller } from '../../src/service/context';
import type { InsertHooks } from '../../src/store/vault-store';
import { dataKey, pending, plainHooks, record } from '../store-conformance/fixtures';
import { DELETE_EXPIRED_SQL as PG_DELETE_EXPIRED_SQL } from '../../src/store/postgres-plan-ops';
import { DELETE_EXPIRED_SQL } from '../../src/store/sqlite-store';
import { createTestDatabase, openTestStore, requirePostgres, sql } from '../helpers/postgres';
import { createTestVault, TestVault } from '../helpers/test-vault';

const HOUR = 3_600;
const RETENTION = { pan: { defaultTtlSeconds: HOUR, maxTtlSeconds: 24 * HOUR }, email: { maxTtlSeconds: 600 } };
const CLI: Caller = { principal: { id: 'cli', roles: [], tenants: ['*'] }, requestId: 'cli' };

function fileBytes(path: string): Buffer {
  return existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
}

describe('retention: default and maximum lifetimes per data type, purge of expired records', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault({}, { settings: { retention: RETENTION, purgeBatchSize: 3 } });
  });
  afterEach(() => v.close());

  const tokenize = (items: object[]) => v.http.post('/v1/tokenize').set(v.as('billing')).send({ items });
  const lifetime = async (token: string) => {
    const { body } = await v.http.get(`/v1/tokens/${token}`).set(v.as('billing')).expect(200);
    return body.expiresAt === null ? null : (Date.parse(body.expiresAt) - Date.parse(body.createdAt)) / 1000;
  };
  const charge = (tokens: string[]) => v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' });
  /** Moves the vault's clock forward. */
  const later = (seconds: number) => {
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + seconds * 1000;
  };

  it("an item without ttlSeconds gets its type's default (else its maximum); other types never expire", async () => {
    const [pan, email, ssn, asked] = await v.tokenize([
      { type: 'pan', value: '4111111111111111' },
      { type: 'email', value: 'jane@example.com' },
      { type: 'ssn', value: '123-45-6789' },
      { type: 'pan', value: '4111111111111111', ttlSeconds: 24 * HOUR },
    ]);
    expect(await lifetime(pan)).to.equal(HOUR);
    expect(await lifetime(email), 'no default: the maximum').to.equal(600);
    expect(await lifetime(ssn)).to.equal(null);
    expect(await lifetime(asked), 'exactly the maximum is allowed').to.equal(24 * HOUR);
  });

  it('an item asking for more than its type allows is refused with 400 ttl_exceeds_retention naming the type and the max; nothing is stored', async () => {
    const headBefore = (await v.opened.store.auditHead())!.seq;
    const res = await tokenize([
      { type: 'ssn', value: '123-45-6789', ttlSeconds: 10 * 365 * 24 * HOUR },
      { type: 'pan', value: '4111111111111111', ttlSeconds: 24 * HOUR + 1 },
    ]);
    expect(res.status).to.equal(400);
    expect(res.body.error).to.include({ code: 'ttl_exceeds_retention' });
    expect(res.body.error.details).to.deep.equal({ index: 1, type: 'pan', maxTtlSeconds: 24 * HOUR });
    expect(res.body.error.message)
      .to.include('pan')
      .and.include(String(24 * HOUR));
    expect(JSON.stringify(res.body))
      .not.to.include('4111')
      .and.not.include(String(24 * HOUR + 1));
    expect(Object.fromEntries(await v.opened.store.recordCountsByKey())).to.deep.equal({});
    expect((await v.opened.store.auditHead())!.seq).to.equal(headBefore);
  });

  it('a deterministic item whose ttl is defaulted matches a stored record the same way an explicit ttl does', async () => {
    const item = { type: 'pan', value: '4111111111111111', deterministic: true };
    const [first] = await v.tokenize([item]);
    expect(await v.tokenize([{ ...item, ttlSeconds: HOUR }]), 'the default, asked for').to.deep.equal([first]);
    expect(await v.tokenize([item]), 'defaulted again').to.deep.equal([first]);
    const res = await tokenize([{ ...item, ttlSeconds: 2 * HOUR }]);
    expect(res.status).to.equal(409);
    expect(res.body.error).to.deep.include({ code: 'deterministic_conflict', details: { index: 0, field: 'ttlSeconds' } });
  });

  it('an expired record answers `expired` until it is purged, then `not_found`; the purge audits counts only, batch by batch', async () => {
    const tokens = await v.tokenize([
      ...Array.from({ length: 4 }, () => ({ type: 'pan', value: '4111111111111111', subject: 'cust_42' })),
      { type: 'email', value: 'jane@example.com' },
      { type: 'pan', value: '4111111111111111', ttlSeconds: 2 * HOUR },
    ]);
    later(HOUR);
    expect((await charge(tokens.slice(0, 4))).body.items.map((i: { error: { code: string } }) => i.error.code)).to.deep.equal(
      Array(4).fill('expired'),
    );

    const dry = await v.opened.vault.purgeExpired(CLI, { dryRun: true });
    expect(dry).to.deep.equal({
      dryRun: true,
      purged: 5,
      counts: [
        { tenant: 'default', type: 'email', records: 1 },
        { tenant: 'default', type: 'pan', records: 4 },
      ],
    });
    expect((await charge([tokens[0]])).body.items[0].error.code, 'a dry run deletes nothing').to.equal('expired');

    const report = await v.opened.vault.purgeExpired(CLI);
    expect(report).to.deep.equal({ ...dry, dryRun: false });
    const answers = (await charge(tokens)).body.items.map((i: { error?: { code: string }; value?: string }) => i.error?.code ?? i.value);
    expect(answers).to.deep.equal([...Array(4).fill('not_found'), 'not_found', '4111111111111111']);
    expect(Object.fromEntries(await v.opened.store.recordCountsByKey())).to.deep.equal({ 'default/1': 1 });

    const rows = (await v.opened.store.auditRows(0, 1000)).filter((r) => r.action.startsWith('retention:'));
    expect(rows.map((r) => [r.action, r.principal, r.reason])).to.deep.equal([
      ['retention:purge-dry-run', 'cli', '5 expired records would be purged: default/email 1, default/pan 4'],
      // Earliest expiry first: the email (its maximum, 600 s) before the cards (the default, an hour).
      ['retention:purge', 'cli', 'purged 3 expired records: default/email 1, default/pan 2'],
      ['retention:purge', 'cli', 'purged 2 expired records: default/pan 2'],
    ]);
    for (const row of rows) {
      expect(row).to.deep.include({ tenant: null, tokens: [], subjects: [] });
      expect(JSON.stringify(row)).not.to.include(tokens[0]).and.not.include('cust_42');
    }
    expect(await v.opened.vault.purgeExpired(CLI), 'nothing left').to.deep.equal({ dryRun: false, purged: 0, counts: [] });
  });

  it('the background task purges under its lease, and not while another instance holds it', async () => {
    await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
    later(HOUR);
    expect(await v.opened.store.acquireLease('retention-purge', 'another-instance', 600_000)).to.equal(true);
    expect(await v.opened.vault.purge.runOnce(), 'another instance holds the lease').to.equal(undefined);
    await v.opened.store.releaseLease('retention-purge', 'another-instance');
    expect(await v.opened.vault.purge.runOnce()).to.deep.include({ purged: 1 });
    const [row] = (await v.opened.store.auditRows(0, 1000)).filter((r) => r.action === 'retention:purge');
    expect(row).to.include({ principal: 'system', reason: 'purged 1 expired records: default/pan 1' });
    expect(await v.opened.store.acquireLease('retention-purge', 'another-instance', 600_000), 'released after the run').to.equal(true);
  });

  it('purged records leave neither ciphertext, nonce, tag, sealed subject nor metadata in the SQLite file or its WAL', async () => {
    const tokens = await v.tokenize(
      Array.from({ length: 5 }, (_, i) => ({
        type: 'pan',
        value: '4111111111111111',
        subject: `purged-subject-${i}`,
        metadata: { label: `purged-label-${i}-a41d8cd98f` },
      })),
    );
    const [kept] = await v.tokenize([{ type: 'pan', value: '4111111111111111', ttlSeconds: 2 * HOUR }]);
    const db = v.opened.store.db;
    const needles = tokens.flatMap((token, i) => {
      const row = db.prepare('SELECT nonce, ciphertext, tag, subject_sealed, metadata FROM tokens WHERE token = ?').get(token) as Record<
        string,
        Buffer | string
      >;
      return [...Object.entries(row), ['label', `purged-label-${i}-a41d8cd98f`]].map(([name, needle]) => ({
        name: `${token} ${name}`,
        needle,
      }));
    });
    const file = v.opened.store.file;
    const stored = () => Buffer.concat([fileBytes(file), fileBytes(`${file}-wal`)]);
    for (const { name, needle } of needles) expect(stored().includes(needle), `${name} before`).to.equal(true);

    later(HOUR);
    expect(await v.opened.vault.purgeExpired(CLI)).to.deep.include({ purged: 5 });
    const after = stored();
    for (const { name, needle } of needles) expect(after.includes(needle), `${name} after`).to.equal(false);
    expect((await charge([kept])).body.items[0].value).to.equal('4111111111111111');
  });

  it('finds expired records through the expiry index, not by scanning the table', () => {
    const plan = (v.opened.store.db.prepare(`EXPLAIN QUERY PLAN ${DELETE_EXPIRED_SQL}`).all(0, 1) as { detail: string }[]).map(
      (r) => r.detail,
    );
    expect(plan.join('; ')).to.match(/SEARCH tokens USING (COVERING )?INDEX tokens_expires_at/);
    expect(
      plan.filter((step) => /^SCAN tokens/.test(step)),
      plan.join('; '),
    ).to.deep.equal([]);
  });
});

describe('retention on PostgreSQL: the purge finds expired records through the expiry index', function () {
  this.timeout(60_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  before(async function () {
    await requirePostgres(this);
    db = await createTestDatabase();
    await (await openTestStore(db.url)).close(); // migrated
  });
  after(() => db?.drop());

  it('a purge committing after a tokenize chose to replace an expired deterministic record: the tokenize does not audit a replacement it did not make', async () => {
    const store = await openTestStore(db!.url);
    try {
      await store.insertDataKey(dataKey(1));
      const fingerprint = Buffer.alloc(32, 1);
      await store.insertTokens([record('tok_old', { fingerprint, expiresAt: 1 })], pending(), plainHooks);
      // Inside the tokenize's transaction, after it saw the expired record and before it deletes it,
      // another process purges (synchronously: the hook cannot wait otherwise).
      const purgeElsewhere = `
        const { openTestStore } = require(${JSON.stringify(join(__dirname, '..', 'helpers', 'postgres'))});
        const { pending } = require(${JSON.stringify(join(__dirname, '..', 'store-conformance', 'fixtures'))});
        (async () => {
          const store = await openTestStore(process.argv[1]);
          const audit = pending(null);
          audit.entry.action = 'retention:purge';
          await store.purgeExpired(1_000, 10, audit);
          await store.close();
        })().catch((err) => { console.error(err); process.exit(1); });`;
      let purged = false;
      const hooks: InsertHooks = {
        ...plainHooks,
        resolveExisting: (_index, existing) => {
          if (!purged) {
            purged = true;
            const child = spawnSync(process.execPath, ['-e', purgeElsewhere, db!.url], { encoding: 'utf8', timeout: 30_000 });
            if (child.status !== 0) throw new Error(child.stderr);
          }
          return { replace: existing.map((r) => r.token) };
        },
      };
      expect(await store.insertTokens([record('tok_new', { fingerprint, expiresAt: 10_000_000 })], pending(), hooks)).to.deep.equal([
        'tok_new',
      ]);
      const rows = await store.auditRows(0, 100);
      expect(rows.map((r) => [r.action, r.reason])).to.deep.equal([
        ['tokenize', null],
        ['retention:purge', 'purged 1 expired records: t/text 1'],
        ['tokenize', null],
      ]);
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 1 });
    } finally {
      await store.close();
    }
  });

  it('plans an index scan of tokens_expires_at, not a scan of the table, among 20,000 records', async () => {
    await sql(
      db!.url,
      `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, created_at, expires_at)
       SELECT 'tok_' || n, 't', 'text', 'random', 'none', 2, 1, '\\x00', '\\x00', '\\x00', 0, CASE WHEN n % 1000 = 0 THEN n END
       FROM generate_series(1, 20000) AS n`,
    );
    await sql(db!.url, 'ANALYZE tokens');
    const plan = (await sql<{ 'QUERY PLAN': string }>(db!.url, `EXPLAIN ${PG_DELETE_EXPIRED_SQL}`, [100, 10])).map((r) => r['QUERY PLAN']);
    expect(plan.join('\n')).to.match(/Index (Only )?Scan using tokens_expires_at on tokens/);
    expect(
      plan.filter((step) => /Seq Scan on tokens/.test(step)),
      plan.join('\n'),
    ).to.deep.equal([]);
  });
});
