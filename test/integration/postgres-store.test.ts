import { expect } from 'chai';
import { Client } from 'pg';
import { FIND_TOKENS_SQL, PostgresStore } from '../../src/store/postgres-store';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres-migrations';
import {
  AuditUnavailableError,
  AuditRow,
  DataKeyRecord,
  GENESIS_HASH,
  InsertHooks,
  KeyInUseError,
  PendingAudit,
  StaleDataKeyError,
  TokenCollisionError,
  TokenRecord,
} from '../../src/store/vault-store';
import { activeDataKey, auditEntry, testSealer as sealer, tokenRecord as record } from '../helpers/store-fixtures';
import { createTestDatabase, openTestStore, requirePostgres, sql } from '../helpers/postgres';
import { waitFor } from '../helpers/wait-for';

const audit = (): PendingAudit => ({ entry: auditEntry(), sealer });
const noDeterministic = (retokenize: (i: number) => TokenRecord): InsertHooks => ({
  retokenize,
  resolveExisting: () => {
    throw new Error('no deterministic records here');
  },
});
const key = (version: number, state: DataKeyRecord['state'] = 'active', tenant = 't'): DataKeyRecord => ({
  ...activeDataKey(),
  tenant,
  version,
  state,
});
const deterministic = (token: string, fingerprint = 'f'): TokenRecord => ({ ...record(token), fingerprint: Buffer.from(fingerprint) });
/** Each row links to the one before it (the test sealer's "hash" is the seq in the last bytes). */
function expectOneChain(rows: AuditRow[], count: number): void {
  expect(rows.map((r) => r.seq)).to.deep.equal(Array.from({ length: count }, (_, i) => i + 1));
  rows.forEach((row, i) => expect(row.prevHash.equals(i === 0 ? GENESIS_HASH : rows[i - 1].hash), `row ${row.seq} links`).to.equal(true));
}

describe('store / PostgresStore (real PostgreSQL)', function () {
  this.timeout(60_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let store: PostgresStore;
  const count = async (table: string) => Number((await sql<{ n: string }>(db.url, `SELECT count(*) AS n FROM ${table}`))[0].n);

  before(async function () {
    await requirePostgres(this);
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    store = await openTestStore(db.url);
    await store.insertDataKey(activeDataKey());
  });
  afterEach(async () => {
    await store?.close();
    await db?.drop();
  });

  it('migrates once when several instances start at the same time', async () => {
    const more = await Promise.all([openTestStore(db.url), openTestStore(db.url), openTestStore(db.url)]);
    await Promise.all(more.map((s) => s.close()));
    expect(await sql(db.url, 'SELECT version FROM schema_migrations ORDER BY version')).to.deep.equal(
      POSTGRES_MIGRATIONS.map(({ version }) => ({ version })),
    );
  });

  it('migration 3 gives every existing subject a handle and indexes old audit rows (which keep their HMACs) under it', async () => {
    const older = await createTestDatabase();
    try {
      await sql(older.url, 'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
      for (const m of POSTGRES_MIGRATIONS.filter((m) => m.version < 3)) {
        await sql(older.url, m.sql);
        await sql(older.url, 'INSERT INTO schema_migrations VALUES ($1, $2)', [m.version, 'then']);
      }
      const subject = Buffer.alloc(32, 7);
      for (const [token, hash] of [
        ['tok_a', subject],
        ['tok_b', subject],
        ['tok_c', null],
      ] as const) {
        await sql(
          older.url,
          `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, subject_hash, created_at)
           VALUES ($1, 't', 'text', 'random', 'none', 2, 1, '\\x00', '\\x01', '\\x02', $2, 5)`,
          [token, hash],
        );
      }
      for (const [seq, subjects] of [
        [1, [subject.toString('hex')]],
        [2, []],
      ] as const) {
        await sql(
          older.url,
          `INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
           VALUES ($1, 'then', 'r', 'p', 't', 'tokenize', '[]', '[]', NULL, 'allow', NULL, $2, 1, '\\x00', '\\x00')`,
          [seq, JSON.stringify(subjects)],
        );
      }
      const migrated = await openTestStore(older.url);
      try {
        const row = (await migrated.subject('t', subject))!;
        expect(row.handle).to.have.length(16);
        expect((await migrated.findTokens(['tok_a'])).get('tok_a')![0].subjectRow).to.deep.equal(row);
        expect((await migrated.findTokens(['tok_c'])).get('tok_c')![0].subjectRow).to.equal(null);
        const indexed = await migrated.auditRowsOfSubject(row.handle, 0, 10);
        expect(indexed.map((r) => [r.seq, r.subjects])).to.deep.equal([[1, [subject.toString('hex')]]]);
      } finally {
        await migrated.close();
      }
    } finally {
      await older.drop();
    }
  });

  it('an audit row that cannot be written fails the write closed: AuditUnavailableError, nothing of it stored', async () => {
    await sql(db.url, 'ALTER TABLE audit ADD CONSTRAINT refuse_rows CHECK (false) NOT VALID');
    const err = await store
      .insertTokens(
        [record('tok_a')],
        audit(),
        noDeterministic(() => record('x')),
      )
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AuditUnavailableError);
    expect([await count('tokens'), await count('audit'), await count('record_counts')]).to.deep.equal([0, 0, 0]);
  });

  it('data keys: insert once (false when the version exists), read active, by version, and all; encryptions counted', async () => {
    expect(await store.insertDataKey(activeDataKey())).to.equal(false);
    expect(await store.insertDataKey(key(2))).to.equal(false); // a second active key of the same (tenant, purpose)
    expect(await store.insertDataKey(key(1, 'active', 'u'))).to.equal(true);
    await store.insertTokens(
      [record('tok_a'), { ...record('tok_b'), subjectSealed: Buffer.from('s') }],
      audit(),
      noDeterministic(() => record('x')),
    );
    expect(await store.activeDataKey('t', 'data')).to.deep.include({ version: 1, state: 'active', encryptions: 3, createdAt: 0 });
    expect(await store.dataKey('t', 'data', 1)).to.deep.include({ wrapped: Buffer.alloc(61), kekId: 'local:v1' });
    expect(await store.dataKey('t', 'data', 2)).to.equal(undefined);
    expect((await store.listDataKeys()).map((k) => `${k.tenant}/${k.version}`)).to.deep.equal(['t/1', 'u/1']);
  });

  it('insertTokens stores the records with one audit row naming them, counts them, and finds them by token', async () => {
    const tokens = await store.insertTokens(
      [record('tok_a'), { ...record('tok_b'), metadata: { plan: 'gold', n: 2 }, expiresAt: 1_700_000_000_000 }],
      audit(),
      noDeterministic(() => record('x')),
    );
    expect(tokens).to.deep.equal(['tok_a', 'tok_b']);
    const found = await store.findTokens(['tok_a', 'tok_b', 'tok_none']);
    expect([...found.keys()].sort()).to.deep.equal(['tok_a', 'tok_b']);
    expect(found.get('tok_b')![0]).to.deep.equal({
      ...record('tok_b'),
      metadata: { plan: 'gold', n: 2 },
      expiresAt: 1_700_000_000_000,
      subjectRow: null,
    });
    expect(await store.recordCountsByKey()).to.deep.equal(new Map([['t/1', 2]]));
    const [row] = await store.auditRows(0, 10);
    expect(row).to.deep.include({ seq: 1, tokens: ['tok_a', 'tok_b'], action: 'tokenize', tenant: 't' });
  });

  it('token reads keep working after a later release adds a column to tokens (a rolling upgrade: prepared reads name their columns)', async () => {
    await store.insertTokens([deterministic('tok_a')], audit(), {
      retokenize: () => record('x'),
      resolveExisting: () => 'insert',
    });
    const reads = () =>
      Promise.all([
        ...Array.from({ length: 4 }, () => store.findTokens(['tok_a'])),
        ...Array.from({ length: 4 }, () => store.findDeterministic('t', [{ type: 'text', fingerprint: Buffer.from('f') }])),
      ]);
    await reads();
    // What a newer instance's migration may do while this one serves.
    await sql(db.url, 'ALTER TABLE tokens ADD COLUMN added_later TEXT');
    const after = await reads();
    expect([...(after[0] as Map<string, unknown[]>).keys()]).to.deep.equal(['tok_a']);
    expect(after[4]).to.have.length(1);
  });

  it('a token taken in the tenant gets a new one from retokenize; the same token in another tenant does not collide', async () => {
    await store.insertDataKey(key(1, 'active', 'u'));
    await store.insertTokens(
      [record('tok_a')],
      audit(),
      noDeterministic(() => record('x')),
    );
    expect(
      await store.insertTokens(
        [{ ...record('tok_a'), tenant: 'u' }],
        audit(),
        noDeterministic(() => record('x')),
      ),
    ).to.deep.equal(['tok_a']);
    const retried: number[] = [];
    const tokens = await store.insertTokens(
      [record('tok_b'), record('tok_a'), record('tok_b')],
      audit(),
      noDeterministic((i) => (retried.push(i), record(`tok_new${i}`))),
    );
    expect(tokens).to.deep.equal(['tok_b', 'tok_new1', 'tok_new2']);
    expect(retried).to.deep.equal([1, 2]);
    expect((await store.findTokens(['tok_a'])).get('tok_a')!.map((r) => r.tenant)).to.deep.equal(['t', 'u']);
  });

  it('gives up with TokenCollisionError after MAX_TOKEN_ATTEMPTS, writing nothing', async () => {
    await store.insertTokens(
      [record('tok_a')],
      audit(),
      noDeterministic(() => record('x')),
    );
    const err = await store
      .insertTokens(
        [record('tok_b'), record('tok_a')],
        audit(),
        noDeterministic(() => record('tok_a')),
      )
      .catch((e) => e);
    expect(err).to.be.instanceOf(TokenCollisionError);
    expect(await count('tokens')).to.equal(1);
    expect(await count('audit')).to.equal(1);
  });

  it("concurrent batches share one transaction's insert; one refused (stale key, taken token) is refused alone, the others stored once", async () => {
    await store.insertTokens(
      [record('tok_taken')],
      audit(),
      noDeterministic(() => record('x')),
    );
    await store.insertDataKey(key(1, 'decrypt-only', 'old'));
    const subject = (token: string): TokenRecord => ({
      ...record(token),
      subjectHash: Buffer.alloc(32, 9),
      subjectSealed: Buffer.from('s'),
    });
    const outcomes = await Promise.allSettled([
      store.insertTokens(
        [record('tok_1')],
        audit(),
        noDeterministic(() => record('x')),
      ),
      store.insertTokens(
        [{ ...record('tok_stale'), tenant: 'old' }],
        audit(),
        noDeterministic(() => record('x')),
      ),
      store.insertTokens(
        [record('tok_2'), subject('tok_s')],
        audit(),
        noDeterministic(() => record('x')),
      ),
      store.insertTokens(
        [record('tok_taken')],
        audit(),
        noDeterministic(() => record('tok_retried')),
      ),
      store.insertTokens(
        [record('tok_3')],
        audit(),
        noDeterministic(() => record('x')),
      ),
    ]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).name))).to.deep.equal([
      ['tok_1'],
      'StaleDataKeyError',
      ['tok_2', 'tok_s'],
      ['tok_retried'],
      ['tok_3'],
    ]);
    const stored = await sql<{ token: string }>(db.url, 'SELECT token FROM tokens ORDER BY token');
    expect(stored.map((r) => r.token)).to.deep.equal(['tok_1', 'tok_2', 'tok_3', 'tok_retried', 'tok_s', 'tok_taken']);
    expect(await store.recordCountsByKey()).to.deep.equal(new Map([['t/1', 6]]));
    expect((await store.auditRows(0, 10)).map((r) => r.tokens)).to.have.deep.members([
      ['tok_taken'],
      ['tok_1'],
      ['tok_2', 'tok_s'],
      ['tok_retried'],
      ['tok_3'],
    ]);
  });

  it('refuses (StaleDataKeyError, nothing written) a batch sealed under a key that is not active', async () => {
    await store.rotateDataKey(key(2), audit());
    const err = await store
      .insertTokens(
        [record('tok_a')],
        audit(),
        noDeterministic(() => record('x')),
      )
      .catch((e) => e);
    expect(err).to.be.instanceOf(StaleDataKeyError);
    expect(await count('tokens')).to.equal(0);
    expect(await count('audit')).to.equal(1); // the rotation's
  });

  it('deterministic records: the hook sees the stored ones (of this batch too) and reuses, replaces or inserts', async () => {
    const seen: string[][] = [];
    const hooks = (decide: (existing: TokenRecord[]) => ReturnType<InsertHooks['resolveExisting']>): InsertHooks => ({
      retokenize: () => record('x'),
      resolveExisting: (_i, existing) => (seen.push(existing.map((r) => r.token)), decide(existing)),
    });
    expect(
      await store.insertTokens(
        [deterministic('tok_d1'), deterministic('tok_d2')],
        audit(),
        hooks((e) => ({ reuse: e[0].token })),
      ),
    ).to.deep.equal(['tok_d1', 'tok_d1']);
    expect(seen).to.deep.equal([['tok_d1']]);
    const tokens = await store.insertTokens(
      [deterministic('tok_d3')],
      audit(),
      hooks((e) => ({ replace: e.map((r) => r.token) })),
    );
    expect(tokens).to.deep.equal(['tok_d3']);
    expect([...(await store.findTokens(['tok_d1', 'tok_d3'])).keys()]).to.deep.equal(['tok_d3']);
    expect((await store.auditRows(1, 1))[0].reason).to.equal('replaced expired deterministic tokens: tok_d1');
    expect(await store.recordCountsByKey()).to.deep.equal(new Map([['t/1', 1]]));
    const other = { ...deterministic('tok_d4'), format: 'uuid' as const };
    expect(
      await store.insertTokens(
        [other],
        audit(),
        hooks(() => 'insert'),
      ),
    ).to.deep.equal(['tok_d4']);
    const found = await store.findDeterministic('t', [
      { type: 'text', fingerprint: Buffer.from('nope') },
      { type: 'text', fingerprint: Buffer.from('f') },
    ]);
    expect(found.map((r) => r.token).sort()).to.deep.equal(['tok_d3', 'tok_d4']);
    expect(await store.findDeterministic('other', [{ type: 'text', fingerprint: Buffer.from('f') }])).to.deep.equal([]);
  });

  it('a hook that throws refuses the whole batch, writing nothing', async () => {
    await store.insertTokens(
      [deterministic('tok_d1')],
      audit(),
      noDeterministic(() => record('x')),
    );
    const err = await store
      .insertTokens(
        [record('tok_r'), deterministic('tok_d2')],
        audit(),
        noDeterministic(() => record('x')),
      )
      .catch((e) => e);
    expect(err.message).to.equal('no deterministic records here');
    expect(await count('tokens')).to.equal(1);
  });

  it('deleteToken deletes with its audit row and uncounts; false and no row when there is none', async () => {
    await store.insertTokens(
      [record('tok_a')],
      audit(),
      noDeterministic(() => record('x')),
    );
    expect(await store.deleteToken('other', 'tok_a', audit())).to.equal(false);
    expect(await store.deleteToken('t', 'tok_a', audit())).to.equal(true);
    expect(await store.findTokens(['tok_a'])).to.deep.equal(new Map());
    expect(await store.recordCountsByKey()).to.deep.equal(new Map());
    expect(await count('audit')).to.equal(2);
  });

  it('rotateDataKey demotes the active key; false (nothing written) when the version exists or another rotation won', async () => {
    expect(await store.rotateDataKey(key(1), audit())).to.equal(false);
    expect(await store.rotateDataKey(key(2), audit(), 7)).to.equal(false);
    expect(await store.rotateDataKey(key(2), audit(), 1)).to.equal(true);
    expect((await store.listDataKeys()).map((k) => k.state)).to.deep.equal(['decrypt-only', 'active']);
    expect(await count('audit')).to.equal(1);
  });

  it('updateWrappedKey replaces the wrapping only if it is still as read and the key is not destroyed', async () => {
    const from = { kekId: 'local:v1', wrapped: Buffer.alloc(61) };
    const to = { kekId: 'local:v2', wrapped: Buffer.alloc(61, 1) };
    const id = { tenant: 't', purpose: 'data' as const, version: 1 };
    expect(await store.updateWrappedKey(id, to, from)).to.equal(false);
    expect(await store.updateWrappedKey(id, from, to)).to.equal(true);
    expect(await store.dataKey('t', 'data', 1)).to.deep.include(to);
  });

  it('changeDataKeyState: KeyInUseError while records use the key; destroy drops the wrapped key; false from a wrong state', async () => {
    await store.insertTokens(
      [record('tok_a')],
      audit(),
      noDeterministic(() => record('x')),
    );
    await store.rotateDataKey(key(2), audit());
    const v1 = { tenant: 't', purpose: 'data' as const, version: 1 };
    const err = await store.changeDataKeyState(v1, 'decrypt-only', 'retired', audit()).catch((e) => e);
    expect(err).to.be.instanceOf(KeyInUseError).and.to.have.property('records', 1);
    await store.deleteToken('t', 'tok_a', audit());
    expect(await store.changeDataKeyState(v1, 'active', 'retired', audit())).to.equal(false);
    expect(await store.changeDataKeyState(v1, 'decrypt-only', 'retired', audit())).to.equal(true);
    expect(await store.changeDataKeyState(v1, 'retired', 'destroyed', audit())).to.equal(true);
    expect(await store.dataKey('t', 'data', 1)).to.deep.include({ state: 'destroyed', wrapped: null });
    expect(await count('audit')).to.equal(5);
  });

  it('re-encryption: recordsBehind pages in byte order; replaceCiphertexts swaps only unchanged records, counts and reports progress', async () => {
    const tokens = ['tok_B', 'tok_a', 'tok_C', 'tok_b'];
    await store.insertTokens(
      tokens.map((t) => record(t)),
      audit(),
      noDeterministic(() => record('x')),
    );
    await store.rotateDataKey(key(2), audit());
    const job = {
      id: 'job1',
      kind: 'reencrypt' as const,
      tenants: ['t'],
      state: 'running' as const,
      total: 4,
      done: 0,
      failed: 0,
      requestedBy: 'sec',
      createdAt: 5,
      updatedAt: 5,
      finishedAt: null,
      error: null,
    };
    await store.insertJob(job);
    const page = await store.recordsBehind('t', 2, 2, '', 3);
    expect(page.map((r) => r.token)).to.deep.equal(['tok_B', 'tok_C', 'tok_a']); // binary order, as SQLite
    expect((await store.recordsBehind('t', 2, 2, 'tok_a', 3)).map((r) => r.token)).to.deep.equal(['tok_b']);
    const update = (token: string, fromVersion = 1) => ({
      token,
      tenant: 't',
      fromVersion,
      fromBinding: 2,
      keyVersion: 2,
      binding: 2,
      preserve: 'none' as const,
      nonce: Buffer.alloc(12, 7),
      ciphertext: Buffer.from('new'),
      tag: Buffer.alloc(16, 7),
      subjectSealed: null,
    });
    expect(await store.replaceCiphertexts([update('tok_B'), update('tok_C', 9)], 'job1', 1, 42)).to.equal(1);
    expect((await store.findTokens(['tok_B'])).get('tok_B')![0]).to.deep.include({ keyVersion: 2, ciphertext: Buffer.from('new') });
    expect(await store.recordCountsByKey()).to.deep.equal(
      new Map([
        ['t/1', 3],
        ['t/2', 1],
      ]),
    );
    expect(await store.job('job1')).to.deep.include({ done: 1, failed: 1, updatedAt: 42 });
    expect(await store.dataKey('t', 'data', 2)).to.deep.include({ encryptions: 1 });
    await store.rotateDataKey(key(3), audit());
    expect(await store.replaceCiphertexts([update('tok_C')], 'job1', 0, 43).catch((e) => e)).to.be.instanceOf(StaleDataKeyError);
    expect(await store.job('job1')).to.deep.include({ done: 1, updatedAt: 42 });
  });

  it('jobs: insert, read, update fields, list the running ones', async () => {
    const job = {
      id: 'j',
      kind: 'reencrypt' as const,
      tenants: ['a', 'b'],
      state: 'running' as const,
      total: 0,
      done: 0,
      failed: 0,
      requestedBy: 'sec',
      createdAt: 1,
      updatedAt: 1,
      finishedAt: null,
      error: null,
    };
    await store.insertJob(job);
    expect(await store.job('j')).to.deep.equal(job);
    expect(await store.unfinishedJobs()).to.deep.equal([job]);
    await store.updateJob('j', { state: 'failed', error: 'boom', finishedAt: 9, total: 3 });
    expect(await store.job('j')).to.deep.equal({ ...job, state: 'failed', error: 'boom', finishedAt: 9, total: 3 });
    expect(await store.unfinishedJobs()).to.deep.equal([]);
    expect(await store.job('none')).to.equal(undefined);
  });

  it('audit: appends chain from the genesis hash; rows by tenant; head; checkpoint saved (last wins)', async () => {
    for (const tenant of ['a', 'b', 'a', null]) await store.appendAudit({ entry: { ...auditEntry(), tenant }, sealer });
    const rows = await store.auditRows(0, 10);
    expectOneChain(rows, 4);
    expect((await store.auditRows(1, 10, ['a', 'zz'])).map((r) => r.seq)).to.deep.equal([3]);
    expect(await store.auditHead()).to.deep.equal({ seq: 4, hash: rows[3].hash });
    expect(await store.auditCheckpoint()).to.equal(undefined);
    const checkpoint = { seq: 2, hash: rows[1].hash, keyVersion: 1, createdAt: 'now', mac: Buffer.from('m') };
    await store.saveAuditCheckpoint(checkpoint);
    await store.saveAuditCheckpoint({ ...checkpoint, seq: 3 });
    expect(await store.auditCheckpoint()).to.deep.equal({ ...checkpoint, seq: 3 });
  });

  it('pruneAuditSegment prunes only a segment that follows the last and still matches; an emptied log continues from it', async () => {
    for (let i = 0; i < 3; i++) await store.appendAudit(audit());
    const rows = await store.auditRows(0, 10);
    const segment = {
      fromSeq: 1,
      throughSeq: 3,
      prevHash: GENESIS_HASH,
      headHash: rows[2].hash,
      archivedAt: 'now',
      keyVersion: 1,
      mac: Buffer.from('m'),
    };
    expect(await store.pruneAuditSegment({ ...segment, fromSeq: 2 }, audit())).to.equal(false);
    expect(await store.pruneAuditSegment({ ...segment, headHash: rows[1].hash }, audit())).to.equal(false);
    expect(await store.pruneAuditSegment(segment, audit())).to.equal(true);
    expect(await store.auditSegments()).to.deep.equal([segment]);
    const after = await store.auditRows(0, 10);
    expect(after.map((r) => r.seq)).to.deep.equal([4]);
    expect(after[0].prevHash.equals(rows[2].hash)).to.equal(true);
    // Every row archived: the next append still continues the chain.
    expect(
      await store.pruneAuditSegment({ ...segment, fromSeq: 4, throughSeq: 4, prevHash: rows[2].hash, headHash: after[0].hash }, audit()),
    ).to.equal(true);
    expect(await store.auditHead()).to.deep.include({ seq: 5 });
    const next = await store.appendAudit(audit());
    expect(next.seq).to.equal(6);
  });

  it('group commit: concurrent writes share transactions; one failing write does not undo the others', async () => {
    let transactions = 0;
    const writes_ = (store as unknown as { writes: { commit: (...args: unknown[]) => Promise<void> } }).writes;
    const commit = writes_.commit.bind(writes_);
    writes_.commit = (...args) => (transactions++, commit(...args));
    const writes = Array.from({ length: 50 }, (_, i) =>
      store.insertTokens(
        [record(`tok_${i}`, i === 17 ? 9 : 1)],
        audit(),
        noDeterministic(() => record(`tok_r${i}`)),
      ),
    );
    const results = await Promise.allSettled(writes);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(49);
    expect((results[17] as PromiseRejectedResult).reason).to.be.instanceOf(StaleDataKeyError);
    expect(await count('tokens')).to.equal(49);
    expectOneChain(await store.auditRows(0, 100), 49);
    expect(transactions).to.be.at.most(2); // up to two transactions in flight from one instance
  });

  it('group commit: a write after a rotation in the same transaction sees the key it demoted (no share lock reused past it)', async () => {
    const hooks = noDeterministic(() => record('tok_retry'));
    // Called in one turn: one transaction, in this order.
    const before = store.insertTokens([record('tok_before')], audit(), hooks);
    const rotated = store.rotateDataKey(key(2), audit(), 1);
    const after = store.insertTokens([record('tok_after')], audit(), hooks);
    const [b, r, a] = await Promise.allSettled([before, rotated, after]);
    expect(b).to.deep.equal({ status: 'fulfilled', value: ['tok_before'] });
    expect(r).to.deep.equal({ status: 'fulfilled', value: true });
    expect((a as PromiseRejectedResult).reason).to.be.instanceOf(StaleDataKeyError);
    expect(await count('tokens')).to.equal(1);
    expectOneChain(await store.auditRows(0, 100), 2);
  });

  it('finds a batch of tokens by probing the primary key, also before the table has statistics (after a bulk load)', async () => {
    const insert = (token: string, count: number) =>
      sql(
        db.url,
        `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, created_at)
         SELECT ${token}, 't', 'pan', 'pan', 'last4', 2, 1, '\\x00', '\\x00', '\\x00', 0 FROM generate_series(1, ${count}) AS n`,
      );
    // A new database after a bulk load: no statistics yet (autovacuum analyses it later).
    await insert(`lpad(n::text, 16, '0')`, 1000);
    await insert(`'tok_' || md5(n::text)`, 300_000);
    const wanted = Array.from({ length: 1000 }, (_, i) => String(i + 1).padStart(16, '0'));
    const plan = (await sql<{ 'QUERY PLAN': string }>(db.url, `EXPLAIN ${FIND_TOKENS_SQL}`, [wanted])).map((r) => r['QUERY PLAN']);
    expect(plan.join('\n')).to.match(/Index Scan using tokens_pkey on tokens|Bitmap Index Scan on tokens_pkey/);
    expect(
      plan.filter((step) => /Seq Scan on tokens/.test(step)),
      plan.join('\n'),
    ).to.deep.equal([]);
    expect((await store.findTokens(wanted)).size).to.equal(1000);
  });
});

describe('store / PostgresStore: two instances writing at once', function () {
  this.timeout(120_000);
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let a: PostgresStore;
  let b: PostgresStore;

  before(async function () {
    await requirePostgres(this);
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    a = await openTestStore(db.url);
    b = await openTestStore(db.url);
    await a.insertDataKey(activeDataKey());
  });
  afterEach(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });
  const deadlocks = async () =>
    Number((await sql<{ n: string }>(db.url, 'SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()'))[0].n);
  const waitingForLocks = async () =>
    Number(
      (
        await sql<{ n: string }>(
          db.url,
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
      )[0].n,
    );

  const insertHooks: InsertHooks = { retokenize: () => record('x'), resolveExisting: () => 'insert' };
  const ofSubject = (token: string, subjectHash: Buffer): TokenRecord => ({
    ...record(token),
    subjectHash,
    subjectSealed: Buffer.from('s'),
  });
  /**
   * While a third session holds tenant u's data-key row FOR UPDATE, starts the writes (`start`
   * returns once they wait where the test wants them), then lets the row go; returns what `start` did.
   */
  async function whileKeyRowHeld<T extends object>(start: () => Promise<T>): Promise<T> {
    const holder = new Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM data_keys WHERE tenant = 'u' FOR UPDATE");
      const started = await start();
      await holder.query('COMMIT');
      return started;
    } finally {
      await holder.end();
    }
  }

  const [s1, s2] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
  /**
   * Instance a's transaction claims S2 then S1, instance b's S1 then S2, each with a write between
   * them that waits for u's key row (held by a third session until both wait), and with
   * `refusedFirst` a write refused first (stale key: the batch then runs in savepoints). Returns
   * what each write returned or the name of what it threw, a's writes then b's.
   */
  async function crossedClaims(refusedFirst: boolean): Promise<unknown[]> {
    await a.insertDataKey({ ...activeDataKey(), tenant: 'u' });
    await a.insertDataKey({ ...activeDataKey(), tenant: 'old', state: 'decrypt-only' });
    const batch = (store: PostgresStore, name: string, first: Buffer, second: Buffer) =>
      Promise.allSettled([
        ...(refusedFirst ? [store.insertTokens([{ ...record(`${name}_stale`), tenant: 'old' }], audit(), insertHooks)] : []),
        store.insertTokens([ofSubject(`${name}_first`, first)], audit(), insertHooks),
        store.insertTokens([{ ...record(`${name}_waits`), tenant: 'u' }], audit(), insertHooks),
        store.insertTokens([ofSubject(`${name}_second`, second)], audit(), insertHooks),
      ]);
    const { first, second } = await whileKeyRowHeld(async () => {
      const started = { first: batch(a, 'a', s2, s1), second: batch(b, 'b', s1, s2) };
      await waitFor(async () => (await waitingForLocks()) >= 2, { what: 'both transactions waiting' });
      return started;
    });
    return [...(await first), ...(await second)].map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).name));
  }

  it("two transactions whose writes claim the same subjects in opposite orders queue instead of deadlocking (each locks its writes' subjects in one order first)", async () => {
    // Claimed in their writes' turns, each transaction would hold one subject and want the other's.
    await a.insertTokens([ofSubject('s1_existing', s1), ofSubject('s2_existing', s2)], audit(), insertHooks);
    const before = await deadlocks();
    expect(await crossedClaims(false)).to.deep.equal([['a_first'], ['a_waits'], ['a_second'], ['b_first'], ['b_waits'], ['b_second']]);
    expect(await deadlocks()).to.equal(before);
  });

  it('a deadlock between two transactions running their writes in savepoints ends in one: the loser undoes its whole transaction, not only the write', async () => {
    // The subjects are new (nothing to lock first): the claims deadlock. Retrying the loser's write in its savepoint
    // kept its first claim: the same deadlock again, each detected after deadlock_timeout, until the retries ran out.
    const before = await deadlocks();
    expect(await crossedClaims(true)).to.deep.equal([
      'StaleDataKeyError',
      ['a_first'],
      ['a_waits'],
      ['a_second'],
      'StaleDataKeyError',
      ['b_first'],
      ['b_waits'],
      ['b_second'],
    ]);
    expect(await deadlocks()).to.equal(before + 1);
  });

  it("a write's records are not inserted ahead of an earlier write's subject claim: no new deadlock with a colliding token from the other instance", async () => {
    // Instance a's transaction: [a1 token X (tenant t), a2 subject S (tenant u), a3 token T (tenant t)]; instance b's:
    // [consent of S, token T]. A third session holds u's key row, so a2 waits for it after a1's statements. Were a3's T
    // written with a1's X, b (which claimed S first) would wait for T while a2 waits for S: a deadlock, detected after
    // deadlock_timeout, the loser run again.
    await a.insertDataKey({ ...activeDataKey(), tenant: 'u' });
    const subject = Buffer.alloc(32, 5);
    const hooks = (retokenized: string): InsertHooks => ({ retokenize: () => record(retokenized), resolveExisting: () => 'insert' });
    const before = await deadlocks();
    const { first, second } = await whileKeyRowHeld(async () => {
      const first = Promise.all([
        a.insertTokens([record('X')], audit(), hooks('x')),
        a.insertTokens([{ ...ofSubject('S1', subject), tenant: 'u' }], audit(), hooks('y')),
        a.insertTokens([record('T')], audit(), hooks('a3_retokenized')),
      ]);
      await waitFor(async () => (await waitingForLocks()) >= 1, { what: "a's transaction waiting for u's key row" });
      let secondDone = false;
      const second = Promise.all([
        b.changeConsent('u', subject, { grant: ['p'], withdraw: [] }, 1, audit()),
        b.insertTokens([record('T')], audit(), hooks('b2_retokenized')),
      ]).finally(() => (secondDone = true));
      // b either commits at once (T free) or waits for a's T.
      await waitFor(async () => secondDone || (await waitingForLocks()) >= 2, { what: "b's transaction committed or waiting" });
      return { first, second };
    });
    const [[x, s1, t], [, tb]] = await Promise.all([first, second]);
    expect([x, s1]).to.deep.equal([['X'], ['S1']]);
    expect([...t, ...tb].sort()).to.deep.equal(t[0] === 'T' ? ['T', 'b2_retokenized'] : ['T', 'a3_retokenized']);
    expect(await deadlocks()).to.equal(before);
  });

  it('a deterministic value inserted from both instances at once gets one token', async () => {
    // Each writer reuses whatever record of the identity it is shown (what the service's hook does for a live match).
    const hooks: InsertHooks = { retokenize: () => record('x'), resolveExisting: (_i, existing) => ({ reuse: existing[0].token }) };
    for (let round = 0; round < 10; round++) {
      const fingerprint = `value-${round}`;
      const tokens = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? a : b).insertTokens([deterministic(`tok_${round}_${i}`, fingerprint)], audit(), hooks),
        ),
      );
      expect(new Set(tokens.flat()).size, `round ${round}: ${tokens}`).to.equal(1);
    }
    const [{ n }] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM tokens');
    expect(Number(n)).to.equal(10);
  });

  it('rotation and retirement against inserts: no record is ever left under a retired key', async () => {
    let version = 1;
    let stop = false;
    const inserted: string[] = [];
    // Instance A inserts under the version it last read as active, re-reading it when told the key went stale.
    const writer = (async () => {
      let active = 1;
      for (let i = 0; !stop; i++) {
        try {
          const batch = Array.from({ length: 3 }, (_, j) => record(`tok_${i}_${j}`, active));
          inserted.push(
            ...(await a.insertTokens(
              batch,
              audit(),
              noDeterministic(() => record(`tok_${i}_r${Math.random()}`, active)),
            )),
          );
        } catch (err) {
          if (!(err instanceof StaleDataKeyError)) throw err;
          active = (await a.activeDataKey('t', 'data'))!.version;
        }
      }
    })();
    const retired: number[] = [];
    // Instance B rotates, then retires the previous version at once, whatever A is doing.
    for (let round = 0; round < 15; round++) {
      const previous = version++;
      expect(await b.rotateDataKey(key(version), audit(), previous)).to.equal(true);
      try {
        if (await b.changeDataKeyState({ tenant: 't', purpose: 'data', version: previous }, 'decrypt-only', 'retired', audit())) {
          retired.push(previous);
        }
      } catch (err) {
        if (!(err instanceof KeyInUseError)) throw err;
      }
    }
    stop = true;
    await writer;
    expect(inserted.length).to.be.greaterThan(0);
    const leftUnder = await sql<{ version: number; n: string }>(
      db.url,
      `SELECT k.version, count(t.token) AS n FROM data_keys k JOIN tokens t ON t.tenant = k.tenant AND t.key_version = k.version
       WHERE k.state IN ('retired', 'destroyed') GROUP BY k.version`,
    );
    expect(leftUnder, `retired ${retired}`).to.deep.equal([]);
    const [{ n }] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM tokens');
    expect(Number(n)).to.equal(inserted.length);
    expectOneChain(await a.auditRows(0, 100_000), Number((await a.auditHead())!.seq));
  });

  it('two rotations at once from the same active version: exactly one wins, one key stays active', async () => {
    for (let round = 1; round <= 10; round++) {
      const current = (await a.activeDataKey('t', 'data'))!.version;
      const results = await Promise.all([
        a.rotateDataKey(key(current + 1), audit(), current),
        b.rotateDataKey(key(current + 2), audit(), current),
      ]);
      expect(results.filter(Boolean), `round ${round}`).to.have.length(1);
      const active = (await a.listDataKeys()).filter((k) => k.state === 'active');
      expect(active.map((k) => k.version)).to.deep.equal([current + (results[0] ? 1 : 2)]);
    }
    expect((await a.auditRows(0, 100)).length).to.equal(10);
  });

  it('audit appends from both instances at once form one gap-free chain', async () => {
    // Workers that each wait for their append before the next: many small transactions, interleaved across instances.
    const worker = async (store: PostgresStore, name: string) => {
      for (let i = 0; i < 50; i++) await store.appendAudit({ entry: { ...auditEntry(), requestId: `${name}-${i}` }, sealer });
    };
    await Promise.all(['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'b3', 'b4'].map((name) => worker(name[0] === 'a' ? a : b, name)));
    const rows = await a.auditRows(0, 1_000);
    expectOneChain(rows, 400);
    expect(new Set(rows.map((r) => r.requestId)).size).to.equal(400);
  });
});
