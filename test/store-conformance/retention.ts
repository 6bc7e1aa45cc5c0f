import { expect } from 'chai';
import type { InsertHooks, TokenRecord, VaultStore } from '../../src/store/vault-store';
import { waitFor } from '../helpers/wait-for';
import type { StoreFactory, StoreUnderTest } from './factories';
import { countedRecords, dataKey, expectIntactChain, keptCounts, pending, plainHooks, record } from './fixtures';

const NOW = 1_000_000;

const turns = (n: number) =>
  Array.from({ length: n }).reduce<Promise<void>>((p) => p.then(() => new Promise(setImmediate)), Promise.resolve());

/** An audit entry as the purge task files it: vault-wide, no tokens, no subjects. */
const purgeAudit = () => {
  const audit = pending(null);
  audit.entry.action = 'retention:purge';
  audit.entry.types = [];
  return audit;
};

/** What each purge reported, added up per `tenant/type`. */
function total(results: Array<Array<{ tenant: string; type: string; records: number }>>): Map<string, number> {
  const sum = new Map<string, number>();
  for (const counts of results)
    for (const c of counts) sum.set(`${c.tenant}/${c.type}`, (sum.get(`${c.tenant}/${c.type}`) ?? 0) + c.records);
  return sum;
}

/** Purges in batches of `limit` until nothing is left; every batch's counts. */
async function purgeAll(store: VaultStore, limit: number, now = NOW): Promise<Array<Awaited<ReturnType<VaultStore['purgeExpired']>>>> {
  const batches = [];
  for (;;) {
    const counts = await store.purgeExpired(now, limit, purgeAudit());
    if (counts.length === 0) return batches;
    batches.push(counts);
  }
}

/** purgeExpired, expiredCounts and leases: their contracts, then their interleavings on two connections. */
export function describeStoreRetention(factory: StoreFactory): void {
  describe('retention: purgeExpired, expiredCounts, leases', () => {
    let opened: StoreUnderTest;
    let store: VaultStore;
    beforeEach(async () => {
      opened = await factory.open();
      store = opened.store;
      await store.insertDataKey(dataKey(1));
      await store.insertDataKey(dataKey(1, 'active', 'u'));
    });
    afterEach(() => opened.cleanup());

    it('deletes exactly the records expired at `now`, earliest first, in batches of `limit`, with the record counts', async () => {
      await store.insertTokens(
        [
          record('tok_e3', { expiresAt: NOW }), // expires exactly now: expired, as detokenize says
          record('tok_e1', { expiresAt: NOW - 300 }),
          record('tok_live', { expiresAt: NOW + 1 }),
          record('tok_forever'),
          record('tok_e2', { type: 'email', expiresAt: NOW - 200 }),
        ],
        pending(),
        plainHooks,
      );
      await store.rotateDataKey(dataKey(2), pending(), 1);
      await store.insertTokens([record('tok_e4', { keyVersion: 2, expiresAt: NOW - 100 })], pending(), plainHooks);
      await store.insertTokens([record('tok_u', { tenant: 'u', expiresAt: NOW - 50 })], pending('u'), plainHooks);
      const headBefore = (await store.auditHead())!.seq;

      expect(await store.expiredCounts(NOW)).to.deep.equal([
        { tenant: 't', type: 'email', records: 1 },
        { tenant: 't', type: 'text', records: 3 },
        { tenant: 'u', type: 'text', records: 1 },
      ]);
      expect((await store.auditHead())!.seq, 'expiredCounts is a plain read').to.equal(headBefore);

      expect(await store.purgeExpired(NOW, 2, purgeAudit()), 'the two earliest').to.deep.equal([
        { tenant: 't', type: 'email', records: 1 },
        { tenant: 't', type: 'text', records: 1 },
      ]);
      expect([...(await store.findTokens(['tok_e1', 'tok_e2', 'tok_e3'])).keys()]).to.deep.equal(['tok_e3']);
      expect(await purgeAll(store, 2), 'then tok_e4 and tok_u, then tok_e3').to.deep.equal([
        [
          { tenant: 't', type: 'text', records: 1 },
          { tenant: 'u', type: 'text', records: 1 },
        ],
        [{ tenant: 't', type: 'text', records: 1 }],
      ]);
      const left = await store.findTokens(['tok_e1', 'tok_e2', 'tok_e3', 'tok_e4', 'tok_u', 'tok_live', 'tok_forever']);
      expect([...left.keys()]).to.have.members(['tok_live', 'tok_forever']);
      expect(await store.expiredCounts(NOW)).to.deep.equal([]);
      const all = ['tok_e1', 'tok_e2', 'tok_e3', 'tok_e4', 'tok_live', 'tok_forever'];
      expect(await keptCounts(store)).to.deep.equal(await countedRecords(store, all));
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 2 });
    });

    it('files one audit row per batch with counts only (no token, no subject); nothing expired writes nothing', async () => {
      const subject = { subjectHash: Buffer.alloc(32, 7), subjectSealed: Buffer.from('sealed subject') };
      await store.insertTokens(
        [record('tok_a', { expiresAt: 1, ...subject }), record('tok_b', { type: 'pan', expiresAt: 2 }), record('tok_c', { expiresAt: 3 })],
        pending(),
        plainHooks,
      );
      expect(await store.purgeExpired(NOW, 10, purgeAudit())).to.deep.equal([
        { tenant: 't', type: 'pan', records: 1 },
        { tenant: 't', type: 'text', records: 2 },
      ]);
      const rows = await expectIntactChain(store);
      expect(rows).to.have.length(2);
      const row = rows[1];
      expect(row).to.deep.include({
        action: 'retention:purge',
        tenant: null,
        types: ['pan', 'text'],
        tokens: [],
        subjects: [],
        reason: 'purged 3 expired records: t/pan 1, t/text 2',
      });
      expect(JSON.stringify(row)).not.to.match(/tok_|ciphertext/);

      expect(await store.purgeExpired(NOW, 10, purgeAudit())).to.deep.equal([]);
      expect((await store.auditHead())!.seq, 'no row for an empty purge').to.equal(2);
    });

    it('counts come in (tenant, type) order by code unit on every store, whatever its collation', async () => {
      for (const tenant of ['ab', 'a_b', 'a-b']) {
        await store.insertDataKey(dataKey(1, 'active', tenant));
        await store.insertTokens([record(`tok_${tenant}`, { tenant, type: 'pan', expiresAt: 1 })], pending(tenant), plainHooks);
        await store.insertTokens([record(`tok_${tenant}`, { tenant, type: 'email', expiresAt: 1 })], pending(tenant), {
          ...plainHooks,
          retokenize: () => record(`tok_${tenant}_2`, { tenant, type: 'email', expiresAt: 1 }),
        });
      }
      const order = ['a-b/email', 'a-b/pan', 'a_b/email', 'a_b/pan', 'ab/email', 'ab/pan'];
      expect((await store.expiredCounts(NOW)).map((c) => `${c.tenant}/${c.type}`)).to.deep.equal(order);
      expect((await store.purgeExpired(NOW, 10, purgeAudit())).map((c) => `${c.tenant}/${c.type}`)).to.deep.equal(order);
    });

    it('leases: taken when free or expired, renewed by the holder, refused to others, released at once', async () => {
      const LONG = 600_000;
      expect(await store.acquireLease('purge', 'A', LONG)).to.equal(true);
      expect(await store.acquireLease('purge', 'A', LONG), 'the holder renews').to.equal(true);
      expect(await store.acquireLease('purge', 'B', LONG), 'a live lease is not taken').to.equal(false);
      expect(await store.acquireLease('other', 'B', LONG), 'leases are per name').to.equal(true);
      await store.releaseLease('purge', 'B'); // not the holder's: changes nothing
      expect(await store.acquireLease('purge', 'B', LONG)).to.equal(false);
      await store.releaseLease('purge', 'A');
      expect(await store.acquireLease('purge', 'B', 200), 'a released lease is taken at once').to.equal(true);
      await waitFor(() => store.acquireLease('purge', 'A', LONG), { what: "A taking over B's expired lease" });
      expect(await store.acquireLease('purge', 'B', 200)).to.equal(false);
      expect(await store.auditHead(), 'leases write no audit row').to.equal(undefined);
    });
  });

  describe('retention: concurrent writers on one database (two connections)', () => {
    let opened: StoreUnderTest;
    let a: VaultStore;
    let b: VaultStore;
    beforeEach(async function () {
      opened = await factory.open();
      if (!opened.second) return this.skip();
      a = opened.store;
      b = opened.second;
      await a.insertDataKey(dataKey(1));
      await a.insertDataKey(dataKey(1, 'active', 'u'));
    });
    afterEach(() => opened?.cleanup());

    it('two connections purging at once never delete or count a record twice', async () => {
      const expired = (tenant: string, n: number) =>
        Array.from({ length: n }, (_, i) =>
          record(`tok_${tenant}${i}`, { tenant, type: i % 3 ? 'text' : 'email', expiresAt: NOW - n + i }),
        );
      await a.insertTokens(expired('t', 120), pending(), plainHooks);
      await a.insertTokens(expired('u', 60), pending('u'), plainHooks);
      await a.insertTokens([record('tok_live', { expiresAt: NOW + 1 })], pending(), plainHooks);

      const [fromA, fromB] = await Promise.all([purgeAll(a, 7), purgeAll(b, 7)]);
      expect(Object.fromEntries(total([...fromA, ...fromB]))).to.deep.equal({ 't/email': 40, 't/text': 80, 'u/email': 20, 'u/text': 40 });
      expect(Object.fromEntries(await a.recordCountsByKey())).to.deep.equal({ 't/1': 1 });
      const rows = await expectIntactChain(b);
      const purged = rows.filter((r) => r.action === 'retention:purge');
      expect(purged).to.have.length(fromA.length + fromB.length);
      const audited = purged.reduce((n, r) => n + Number(/^purged (\d+) /.exec(r.reason!)![1]), 0);
      expect(audited, 'the audit rows count each record once').to.equal(180);
    });

    it('a purge racing a tokenize that replaces the same expired deterministic record: no lost record, counts exact', async () => {
      // The service's hook: an expired record of the identity is replaced, a live one reused.
      const replaceExpired: InsertHooks = {
        ...plainHooks,
        resolveExisting: (_index, existing: TokenRecord[]) => {
          const live = existing.find((r) => r.expiresAt === null || r.expiresAt > NOW);
          return live ? { reuse: live.token } : { replace: existing.map((r) => r.token) };
        },
      };
      // Who gets the old record depends on which starts first: from the tokenize started later (by
      // milliseconds, then event-loop turns), to both at once, to the purge later, until both orders were seen.
      const after = (ms: number) => () => new Promise<void>((resolve) => setTimeout(resolve, ms));
      const afterTurns = (n: number) => () => turns(n);
      const now = () => Promise.resolve();
      const schedule: Array<{ purge: () => Promise<void>; tokenize: () => Promise<void> }> = [
        ...[64, 16, 4, 1].map((ms) => ({ purge: now, tokenize: after(ms) })),
        ...[2, 1].map((n) => ({ purge: now, tokenize: afterTurns(n) })),
        { purge: now, tokenize: now },
        ...[1, 2].map((n) => ({ purge: afterTurns(n), tokenize: now })),
        ...[1, 4, 16, 64, 256].map((ms) => ({ purge: after(ms), tokenize: now })),
      ];
      const outcomes = new Set<number>();
      const tokens: string[] = [];
      for (const [round, start] of schedule.entries()) {
        const fingerprint = Buffer.alloc(32, round + 1);
        const others = Array.from({ length: 5 }, (_, i) => record(`tok_${round}_other${i}`, { expiresAt: NOW - 10 }));
        // The old record expired first, so the purge's first batch takes it unless the tokenize has.
        await a.insertTokens([record(`tok_${round}_old`, { fingerprint, expiresAt: NOW - 100 }), ...others], pending(), plainHooks);
        const [purged, made] = await Promise.all([
          start.purge().then(() => purgeAll(a, 2)),
          start
            .tokenize()
            .then(() => b.insertTokens([record(`tok_${round}_new`, { fingerprint, expiresAt: NOW + 1_000 })], pending(), replaceExpired)),
        ]);
        expect(made, `round ${round}`).to.deep.equal([`tok_${round}_new`]);
        const identity = await a.findDeterministic('t', [{ type: 'text', fingerprint }]);
        expect(
          identity.map((r) => r.token),
          `round ${round}: the new record is there, alone`,
        ).to.deep.equal([`tok_${round}_new`]);
        const purgedRecords = [...total(purged).values()].reduce((n, c) => n + c, 0);
        expect(purgedRecords, `round ${round}: the others, and the old record unless the tokenize replaced it first`).to.be.oneOf([5, 6]);
        outcomes.add(purgedRecords);
        tokens.push(`tok_${round}_old`, `tok_${round}_new`, ...others.map((r) => r.token));
        expect(await keptCounts(a), `round ${round}`).to.deep.equal(await countedRecords(a, tokens));
      }
      expect([...outcomes].sort(), 'both orders were seen: the purge took the old record, or the tokenize replaced it').to.deep.equal([
        5, 6,
      ]);
      await expectIntactChain(a);
    });

    it('of two instances claiming one lease at once, one holds it', async () => {
      for (let round = 0; round < 10; round++) {
        const claims = await Promise.all([a.acquireLease(`l${round}`, 'A', 600_000), b.acquireLease(`l${round}`, 'B', 600_000)]);
        expect(claims.filter(Boolean), `round ${round}`).to.have.length(1);
      }
    });
  });
}
