import { expect } from 'chai';
import { appendAuditPlan } from '../../src/store/rules/audit';
import { AsyncTransactionOps, Plan, TransactionOps, ask, runPlan, runPlanAsync } from '../../src/store/transaction-plan';
import { AuditHead, AuditRow, AuditUnavailableError, GENESIS_HASH, InsertHooks, TokenRecord } from '../../src/store/vault-store';
import { insertTokensPlan } from '../../src/store/rules/tokens';
import { activeDataKey, auditEntry, testSealer, tokenRecord } from '../helpers/store-fixtures';

/** Primitives that answer from memory, synchronously or asynchronously (as a PostgreSQL store's would). */
function memoryOps(state: { head?: AuditHead; segment?: AuditHead; rows: AuditRow[]; refuse?: Error }) {
  const sync = {
    lockAuditHead: () => state.head,
    lastAuditSegment: () => state.segment,
    insertAuditRow: (row: AuditRow) => {
      if (state.refuse) throw state.refuse;
      state.rows.push(row);
    },
  } as Partial<TransactionOps> as TransactionOps;
  const async = Object.fromEntries(
    Object.entries(sync).map(([name, fn]) => [name, async (...args: unknown[]) => (fn as (...a: unknown[]) => unknown)(...args)]),
  ) as AsyncTransactionOps;
  return { sync, async };
}

const runners = {
  runPlan: async <T>(plan: Plan<T>, ops: ReturnType<typeof memoryOps>) => runPlan(plan, ops.sync),
  runPlanAsync: <T>(plan: Plan<T>, ops: ReturnType<typeof memoryOps>) => runPlanAsync(plan, ops.async),
};

describe('store / transaction plans run alike on synchronous and asynchronous primitives', () => {
  for (const [name, run] of Object.entries(runners)) {
    describe(name, () => {
      it('hands each primitive its arguments and the plan each result, in order', async () => {
        const calls: string[] = [];
        const ops = memoryOps({ rows: [], head: { seq: 4, hash: Buffer.alloc(32, 4) } });
        const wrapped = {
          sync: { ...ops.sync, lastAuditSegment: () => (calls.push('segment'), undefined) } as TransactionOps,
          async: { ...ops.async, lastAuditSegment: async () => (calls.push('segment'), undefined) } as AsyncTransactionOps,
        };
        function* plan(): Plan<number> {
          const head = yield* ask('lockAuditHead');
          calls.push(`head ${head?.seq}`);
          yield* ask('lastAuditSegment');
          return head!.seq * 10;
        }
        expect(await run(plan(), wrapped)).to.equal(40);
        expect(calls).to.deep.equal(['head 4', 'segment']);
      });

      it('links the audit row to the head, or to the last archived segment when the log is empty, or to the genesis', async () => {
        const pending = { entry: auditEntry(), sealer: testSealer };
        const fromHead = await run(appendAuditPlan(pending), memoryOps({ rows: [], head: { seq: 7, hash: Buffer.alloc(32, 7) } }));
        expect(fromHead).to.deep.include({ seq: 8, prevHash: Buffer.alloc(32, 7) });
        expect(fromHead.hash).to.deep.equal(testSealer.seal(Buffer.alloc(32, 7), 8, pending.entry, 1));
        const fromSegment = await run(appendAuditPlan(pending), memoryOps({ rows: [], segment: { seq: 20, hash: Buffer.alloc(32, 2) } }));
        expect(fromSegment).to.deep.include({ seq: 21, prevHash: Buffer.alloc(32, 2) });
        const first = await run(appendAuditPlan(pending), memoryOps({ rows: [] }));
        expect(first).to.deep.include({ seq: 1, prevHash: GENESIS_HASH });
      });

      it("a primitive's failure is thrown into the plan: a refused audit row is AuditUnavailableError", async () => {
        const refuse = new Error('disk full');
        const state = { rows: [] as AuditRow[], refuse };
        let caught: unknown;
        try {
          await run(appendAuditPlan({ entry: auditEntry(), sealer: testSealer }), memoryOps(state));
        } catch (err) {
          caught = err;
        }
        expect(caught).to.be.instanceOf(AuditUnavailableError);
        expect((caught as AuditUnavailableError).cause).to.equal(refuse);
        expect(state.rows).to.deep.equal([]);
      });
    });
  }
});

describe('store / insertTokensPlan run again (a store retries a transaction)', () => {
  it("names in the audit reason only the tokens this run replaced, not an undone run's", () => {
    const expired = { ...tokenRecord('old'), fingerprint: Buffer.from('f'), expiresAt: 1 };
    const audit = { entry: auditEntry(), sealer: testSealer };
    const run = (stored: TokenRecord[]) => {
      const rows: AuditRow[] = [];
      const ops = {
        lockDataKey: () => ({ ...activeDataKey() }),
        recordsByFingerprint: () => stored,
        deleteRecord: () => ({ keyVersion: 1 }),
        insertRecord: () => 'inserted',
        addEncryptions: () => undefined,
        addRecordCount: () => undefined,
        lockAuditHead: () => undefined,
        lastAuditSegment: () => undefined,
        insertAuditRow: (row: AuditRow) => void rows.push(row),
      } as Partial<TransactionOps> as TransactionOps;
      const hooks: InsertHooks = {
        retokenize: () => tokenRecord('x'),
        resolveExisting: (_i, existing) => ({ replace: existing.map((r) => r.token) }),
      };
      runPlan(insertTokensPlan([{ ...tokenRecord('new'), fingerprint: Buffer.from('f') }], audit, hooks), ops);
      return rows[0];
    };
    expect(run([expired]).reason).to.equal('replaced expired deterministic tokens: old');
    // The first run was undone (its transaction rolled back) and, run again, found nothing to replace (a purge took it meanwhile).
    expect(run([]).reason).to.equal(null);
  });
});
