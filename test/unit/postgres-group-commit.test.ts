import { expect } from 'chai';
import type { Pool } from 'pg';
import { GroupCommit } from '../../src/store/postgres-group-commit';
import { AwaitsChainHead, Named, WriteTx } from '../../src/store/postgres-plan-ops';

/**
 * A stand-in for pg's pool, for the group commit's scheduling only (the store's behaviour on a real
 * server is the conformance suite's): every statement is logged with its connection, and answered
 * at once, except those the test holds at a gate.
 */
function fakePool() {
  const log: Array<{ connection: number; sql: string }> = [];
  const gates: Array<{ sql: string; open: () => void }> = [];
  let connections = 0;
  const held = (sql: string) => sql.includes('FOR UPDATE') || sql.includes('slow');
  const pool = {
    connect: async () => {
      const connection = ++connections;
      return {
        on: () => undefined,
        removeListener: () => undefined,
        release: () => undefined,
        query: (statement: string | Named) => {
          const sql = typeof statement === 'string' ? statement : statement.text;
          log.push({ connection, sql });
          const answer = { rows: sql.includes('audit_chain_head') ? [{ seq: '0', hash: Buffer.alloc(32) }] : [], rowCount: 0 };
          if (!held(sql)) return Promise.resolve(answer);
          return new Promise((resolve) => gates.push({ sql, open: () => resolve(answer) }));
        },
      };
    },
  };
  return { pool: pool as unknown as Pool, log, gates };
}

/** A write with nothing to do before the chain head but append its audit row (what a detokenize writes). */
const appendOnly = async () => new AwaitsChainHead(async () => 'appended');
/** A write with a statement of its own before the head (what a tokenize writes). */
const withStatement = async (tx: WriteTx) => {
  await tx.rows('SELECT 1 -- slow');
  return new AwaitsChainHead(async () => 'written');
};

const turn = () => new Promise((resolve) => setImmediate(resolve));

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await turn();
  if (!condition()) throw new Error('condition never met');
}

describe('store / PostgreSQL group commit scheduling', () => {
  it('while a transaction waits for the chain head, later writes wait too, then go together in one transaction', async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
    const begins = () => log.filter((s) => s.sql === 'BEGIN').length;
    const first = commits.run(appendOnly);
    await until(() => gates.length === 1);
    const later: Array<Promise<unknown>> = [];
    for (let i = 0; i < 5; i++) {
      later.push(commits.run(appendOnly));
      await turn();
    }
    expect(begins(), 'no second transaction while the first is at the head').to.equal(1);
    gates.shift()!.open();
    expect(await first).to.equal('appended');
    await until(() => gates.length === 1);
    expect(begins()).to.equal(2);
    gates.shift()!.open();
    expect(await Promise.all(later)).to.deep.equal(Array(5).fill('appended'));
    expect(begins(), 'the five later writes shared one transaction').to.equal(2);
    expect(log.filter((s) => s.sql === 'COMMIT').length).to.equal(2);
  });

  it('audit-only writes that arrive while a transaction waits for the head join it there and share its commit; others wait for the next', async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
    const commitCount = () => log.filter((s) => s.sql === 'COMMIT').length;
    const first = commits.run(appendOnly, { headOnly: true });
    await until(() => gates.length === 1);
    const late: Array<Promise<unknown>> = [];
    for (let i = 0; i < 4; i++) {
      late.push(commits.run(appendOnly, { headOnly: true }));
      await turn();
    }
    const tokenize = commits.run(withStatement);
    const notDeclared = commits.run(appendOnly);
    await turn();
    gates.shift()!.open();
    expect(await Promise.all([first, ...late])).to.deep.equal(Array(5).fill('appended'));
    expect(commitCount(), 'the four latecomers committed with the first').to.equal(1);
    while (commitCount() < 2) {
      await until(() => gates.length > 0 || commitCount() === 2);
      gates.shift()?.open();
    }
    expect(await Promise.all([tokenize, notDeclared])).to.deep.equal(['written', 'appended']);
    expect(log.filter((s) => s.sql === 'BEGIN').length).to.equal(2);
  });

  it('a latecomer that runs a statement before the head fails alone; the transaction it joined commits the others', async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
    const first = commits.run(appendOnly, { headOnly: true });
    await until(() => gates.length === 1);
    const liar = commits.run(withStatement, { headOnly: true });
    const honest = commits.run(appendOnly, { headOnly: true });
    await turn();
    gates.shift()!.open();
    const [a, b, c] = await Promise.allSettled([first, liar, honest]);
    expect(a).to.deep.equal({ status: 'fulfilled', value: 'appended' });
    expect((b as PromiseRejectedResult).reason.message).to.match(/head-only write ran a statement/);
    expect(c).to.deep.equal({ status: 'fulfilled', value: 'appended' });
    expect(log.filter((s) => s.sql.includes('slow'))).to.deep.equal([]);
  });

  it("writes that arrive while a transaction runs its writes' statements join it before it goes to the head", async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 1, retryAttempts: 1 });
    const first = commits.run(withStatement);
    await until(() => gates.length === 1);
    const joining = [commits.run(withStatement), commits.run(appendOnly)];
    await turn();
    gates.shift()!.open();
    await until(() => gates.length === 1);
    expect(gates[0].sql, "the joining write's statement, before any head").to.include('slow');
    gates.shift()!.open();
    await until(() => gates.length === 1);
    expect(gates[0].sql).to.include('FOR UPDATE');
    gates.shift()!.open();
    expect(await Promise.all([first, ...joining])).to.deep.equal(['written', 'written', 'appended']);
    expect(log.filter((s) => s.sql === 'BEGIN').length, 'one transaction for all three').to.equal(1);
  });

  it('a transaction still running its writes does not hold the next one back (their statements overlap)', async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
    const first = commits.run(withStatement);
    await until(() => gates.length === 1);
    const second = commits.run(withStatement);
    await until(() => gates.length === 2);
    expect(new Set(log.filter((s) => s.sql === 'BEGIN').map((s) => s.connection)).size).to.equal(2);
    // Each gate opened in turn: the writes' statements, then the heads' locks.
    while (gates.length > 0 || log.filter((s) => s.sql === 'COMMIT').length < 2) {
      await until(() => gates.length > 0 || log.filter((s) => s.sql === 'COMMIT').length === 2);
      gates.shift()?.open();
    }
    expect(await Promise.all([first, second])).to.deep.equal(['written', 'written']);
  });

  it('never more than maxConcurrentBatches transactions at once', async () => {
    const { pool, log, gates } = fakePool();
    const commits = new GroupCommit(pool, { maxBatch: 1, maxConcurrentBatches: 2, retryAttempts: 1 });
    const writes = [commits.run(withStatement), commits.run(withStatement), commits.run(withStatement)];
    await until(() => gates.length === 2);
    for (let i = 0; i < 5; i++) await turn();
    expect(log.filter((s) => s.sql === 'BEGIN').length).to.equal(2);
    while (log.filter((s) => s.sql === 'COMMIT').length < 3) {
      await until(() => gates.length > 0 || log.filter((s) => s.sql === 'COMMIT').length === 3);
      gates.shift()?.open();
    }
    expect(await Promise.all(writes)).to.deep.equal(['written', 'written', 'written']);
  });
});
