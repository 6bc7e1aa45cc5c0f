import { expect } from 'chai';
import type { Pool } from 'pg';
import { UpcomingInserts } from '../../src/store/postgres-batch-insert';
import { GroupCommit } from '../../src/store/postgres-group-commit';
import { AwaitsChainHead, Named, WriteTx, planOps } from '../../src/store/postgres-plan-ops';
import type { TokenRecord } from '../../src/store/vault-store';
import { tokenRecord } from '../helpers/store-fixtures';

/**
 * Upcoming inserts whose statement is a stand-in that writes every record but those whose token is
 * `taken`; the transaction holds the data keys of tenant `t` (the fixtures' tenant) only.
 */
function upcoming(taken: string[] = []) {
  const statements: string[][] = [];
  const inserts = new UpcomingInserts(
    async (records) => {
      statements.push(records.map((r) => r.token));
      return new Set(records.filter((r) => !taken.includes(r.token)));
    },
    (tenant) => tenant === 't',
  );
  return { inserts, statements };
}

const withSubject = (token: string): TokenRecord => ({ ...tokenRecord(token), subjectHash: Buffer.alloc(32, 7) });
const deterministic = (token: string): TokenRecord => ({ ...tokenRecord(token), fingerprint: Buffer.alloc(32, 1) });
const otherTenant = (token: string): TokenRecord => ({ ...tokenRecord(token), tenant: 'u' });

describe('store / PostgreSQL upcoming inserts (records of a transaction written together)', () => {
  it("writes every write's records in one statement the first time one is asked for, and answers each as a single insert would", async () => {
    const { inserts, statements } = upcoming(['b1']);
    const [a, b] = [{}, {}];
    const [a1, a2, b1] = [tokenRecord('a1'), tokenRecord('a2'), tokenRecord('b1')];
    inserts.add(a, [a1, a2]);
    inserts.add(b, [b1]);
    expect(await inserts.insert(a, a1)).to.equal('inserted');
    expect(statements).to.deep.equal([['a1', 'a2', 'b1']]);
    expect(inserts.unclaimed, 'a2 and b1 written, not yet asked for').to.equal(2);
    expect(await inserts.insert(a, a2)).to.equal('inserted');
    expect(await inserts.insert(b, b1)).to.equal('token-taken');
    expect(statements).to.have.length(1);
    expect(inserts.unclaimed).to.equal(0);
  });

  it('takes a later write along only while every write up to it takes no lock before its inserts; audit-only writes are passed over', async () => {
    // Each of these would take a lock another instance's transaction may hold while it inserts a colliding token.
    for (const [stopper, why] of [
      [[withSubject('s')], 'claims a subject'],
      [[deterministic('d')], 'looks up and inserts a deterministic identity'],
      [[otherTenant('u')], 'share-locks a data key the transaction does not hold yet'],
      [[], 'runs statements of its own (not an insert)'],
    ] as Array<[TokenRecord[], string]>) {
      const { inserts, statements } = upcoming();
      const [a, audit, b, c, d] = [{}, {}, {}, {}, {}];
      const [a1, b1, b2, d1] = ['a1', 'b1', 'b2', 'd1'].map((token) => tokenRecord(token));
      inserts.add(a, [a1]);
      inserts.add(audit, [], true);
      inserts.add(b, [b1, b2]);
      inserts.add(c, stopper);
      inserts.add(d, [d1]);
      expect(await inserts.insert(a, a1), why).to.equal('inserted');
      expect(statements, why).to.deep.equal([['a1', 'b1', 'b2']]);
      expect(await inserts.insert(d, d1), `${why}: the write after it inserts alone`).to.equal(undefined);
    }
  });

  it('takes no later write along while the asking write still has a deterministic record to look up', async () => {
    const { inserts, statements } = upcoming();
    const [a, b] = [{}, {}];
    const [a1, a2, b1] = [tokenRecord('a1'), tokenRecord('a2'), tokenRecord('b1')];
    inserts.add(a, [a1, deterministic('ad'), a2]);
    inserts.add(b, [b1]);
    await inserts.insert(a, a1);
    expect(statements).to.deep.equal([['a1', 'a2']]);
  });

  it('leaves alone a record that is not registered, is asked for by another write, is deterministic, repeats a token, or would go alone', async () => {
    const { inserts, statements } = upcoming();
    const [a, b] = [{}, {}];
    const fingerprinted = deterministic('d');
    const again = tokenRecord('a1');
    inserts.add(a, [tokenRecord('a1'), fingerprinted, again]);
    expect(await inserts.insert(a, tokenRecord('x')), 'not registered').to.equal(undefined);
    expect(await inserts.insert(a, fingerprinted)).to.equal(undefined);
    expect(await inserts.insert(a, again), 'its token is registered already').to.equal(undefined);
    const lone = withSubject('lone');
    inserts.add(b, [lone]);
    expect(await inserts.insert(a, lone), "another write's").to.equal(undefined);
    expect(statements).to.deep.equal([]);

    const single = upcoming();
    const only = tokenRecord('only');
    single.inserts.add(a, [only]);
    single.inserts.add(b, [withSubject('theirs')]);
    expect(await single.inserts.insert(a, only), 'alone in its statement: inserted the usual way').to.equal(undefined);
    expect(single.statements).to.deep.equal([]);
  });

  describe('in the group commit', () => {
    /** A fake pool answering every statement at once; an insert of tokens writes them all. */
    function fakePool() {
      const log: string[] = [];
      const pool = {
        connect: async () => ({
          on: () => undefined,
          removeListener: () => undefined,
          release: () => undefined,
          query: async (statement: string | (Named & { values?: unknown[] })) => {
            const sql = typeof statement === 'string' ? statement : statement.text;
            log.push(sql);
            if (sql.includes('audit_chain_head')) return { rows: [{ seq: '0', hash: Buffer.alloc(32) }], rowCount: 1 };
            if (sql.includes('FOR SHARE')) {
              const [tenant, purpose, version] = (statement as unknown as { values: [string, string, number] }).values;
              const key = { tenant, purpose, version, state: 'active', kek_id: 'k', wrapped: null, created_at: '0', encryptions: '0' };
              return { rows: [key], rowCount: 1 };
            }
            if (sql.includes('INSERT INTO tokens') && typeof statement !== 'string') {
              const [tokens, tenants] = statement.values as [string[], string[]];
              return { rows: tokens.map((token, i) => ({ token, tenant: tenants[i] })), rowCount: tokens.length };
            }
            return { rows: [], rowCount: 1 };
          },
        }),
      };
      return { pool: pool as unknown as Pool, log };
    }

    const insertingWrite =
      (records: TokenRecord[], ask = records) =>
      async (tx: WriteTx) => {
        const ops = planOps(tx);
        // As insertTokensPlan does: the records' data keys share-locked first.
        for (const r of records) await ops.lockDataKey({ tenant: r.tenant, purpose: 'data', version: r.keyVersion }, 'share');
        const outcomes: string[] = [];
        for (const record of ask) outcomes.push(await ops.insertRecord(record));
        return new AwaitsChainHead(async () => outcomes);
      };

    it('the single-record writes of one transaction insert their records in one statement', async () => {
      const { pool, log } = fakePool();
      const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
      const records = ['t1', 't2', 't3'].map((t) => tokenRecord(t));
      const outcomes = await Promise.all(records.map((r) => commits.run(insertingWrite([r]), { inserting: [r] })));
      expect(outcomes).to.deep.equal([['inserted'], ['inserted'], ['inserted']]);
      expect(log.filter((sql) => sql.includes('INSERT INTO tokens'))).to.have.length(1);
      expect(log.filter((sql) => sql === 'COMMIT')).to.have.length(1);
    });

    it('a write that does not ask for a record it registered fails the transaction: nothing is committed', async () => {
      const { pool, log } = fakePool();
      const commits = new GroupCommit(pool, { maxBatch: 256, maxConcurrentBatches: 2, retryAttempts: 1 });
      const [r1, r2] = [tokenRecord('t1'), tokenRecord('t2')];
      const err = await commits.run(insertingWrite([r1, r2], [r1]), { inserting: [r1, r2] }).then(
        () => expect.fail('committed'),
        (e: Error) => e,
      );
      expect(err.message).to.match(/no write of the transaction asked for/);
      expect(log).to.not.include('COMMIT');
      expect(log).to.include('ROLLBACK');
    });
  });
});
