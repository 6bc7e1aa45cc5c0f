import { expect } from 'chai';
import { KeyInUseError, StaleDataKeyError, VaultStore } from '../../src/store/vault-store';
import { waitFor } from '../helpers/wait-for';
import type { StoreFactory, StoreUnderTest } from './factories';
import {
  countedRecords,
  dataKey,
  expectIntactChain,
  job,
  keptCounts,
  pending,
  plainHooks,
  record,
  reencrypted,
  rejection,
  reuseHooks,
  turns,
} from './fixtures';

/**
 * Interleavings through two connections to one database: each invariant that a store with
 * concurrent writers keeps with locks (see vault-store.ts), checked by its outcome.
 */
export function describeStoreConcurrency(factory: StoreFactory): void {
  describe('concurrent writers on one database (two connections)', () => {
    let opened: StoreUnderTest;
    let a: VaultStore;
    let b: VaultStore;
    beforeEach(async function () {
      opened = await factory.open();
      if (!opened.second) return this.skip();
      a = opened.store;
      b = opened.second;
    });
    afterEach(() => opened?.cleanup());

    it('insert vs rotate vs retire vs destroy: no record lands under a key that is not active; no retire while records use it', async () => {
      for (let round = 0; round < 12; round++) {
        const tenant = `r${round}`;
        const v1 = { tenant, purpose: 'data' as const, version: 1 };
        await a.insertDataKey(dataKey(1, 'active', tenant));
        const acknowledged: string[] = [];
        let rotated = false;
        let afterRotation = 0;
        let acknowledgedAfterRotation = 0;
        let retired = false;
        let destroyed = false;

        const inserter = (async () => {
          for (let i = 0; afterRotation < 5; i++) {
            const startedAfterRotation = rotated;
            if (startedAfterRotation) afterRotation++;
            try {
              const [token] = await a.insertTokens([record(`tok_${round}_${i}`, { tenant })], pending(tenant), plainHooks);
              acknowledged.push(token);
              if (startedAfterRotation) acknowledgedAfterRotation++;
            } catch (err) {
              expect(err).to.be.instanceOf(StaleDataKeyError);
            }
          }
        })();
        const securityTeam = (async () => {
          await turns(round % 6);
          expect(await b.rotateDataKey(dataKey(2, 'active', tenant), pending(tenant), 1)).to.equal(true);
          rotated = true;
          try {
            retired = await b.changeDataKeyState(v1, 'decrypt-only', 'retired', pending(tenant));
          } catch (err) {
            expect(err).to.be.instanceOf(KeyInUseError);
          }
          if (retired) destroyed = await b.changeDataKeyState(v1, 'retired', 'destroyed', pending(tenant));
        })();
        await Promise.all([inserter, securityTeam]);

        expect(acknowledgedAfterRotation, `round ${round}: inserts started after the rotation committed`).to.equal(0);
        const stored = await countedRecords(a, acknowledged, tenant);
        if (retired) expect(stored.get(`${tenant}/1`) ?? 0, `round ${round}: records under the retired key`).to.equal(0);
        else expect(stored.get(`${tenant}/1`), `round ${round}: the retire was refused because records use v1`).to.be.above(0);
        expect(destroyed).to.equal(retired);
        expect(await keptCounts(a, tenant)).to.deep.equal(stored);
      }
      await expectIntactChain(a);
    });

    it('two rotations at once: exactly one wins per expected version; versions unique, one active', async () => {
      for (let round = 0; round < 5; round++) {
        const tenant = `r${round}`;
        await a.insertDataKey(dataKey(1, 'active', tenant));
        // Different next versions, one expected active version: the check must decide, not the primary key.
        const results = await Promise.all([
          a.rotateDataKey(dataKey(2, 'active', tenant), pending(tenant), 1),
          b.rotateDataKey(dataKey(3, 'active', tenant), pending(tenant), 1),
        ]);
        expect(results.filter(Boolean), `round ${round}`).to.have.length(1);
        // Same next version, no expectation: the version decides.
        const [x, y] = await Promise.all([
          a.rotateDataKey(dataKey(4, 'active', tenant), pending(tenant)),
          b.rotateDataKey(dataKey(4, 'active', tenant), pending(tenant)),
        ]);
        expect([x, y].filter(Boolean), `round ${round}`).to.have.length(1);
        const keys = (await b.listDataKeys()).filter((k) => k.tenant === tenant);
        expect(keys.filter((k) => k.state === 'active').map((k) => k.version)).to.deep.equal([4]);
        expect(new Set(keys.map((k) => k.version)).size).to.equal(keys.length);
        expect(keys).to.have.length(3);
      }
      await expectIntactChain(b);
    });

    it('audit appends from two connections interleave into one chain: no gap, no duplicate seq, every link verifies', async () => {
      const appends: Array<Promise<unknown>> = [];
      const failures: unknown[] = [];
      const settle = (p: Promise<unknown>) => p.catch((err: unknown) => failures.push(err));
      for (let i = 0; i < 60; i++) {
        appends.push(settle(a.appendAudit(pending())), settle(b.appendAudit(pending())));
        if (i % 7 === 0) appends.push(b.insertTokens([record(`tok_${i}`, { tenant: 't' })], pending(), plainHooks).catch(() => null));
        // Spread over event-loop turns, so that a store grouping writes per turn commits many transactions that overlap.
        if (i % 3 === 0) await turns(1);
      }
      await a.insertDataKey(dataKey(1));
      await Promise.all(appends);
      expect(failures).to.deep.equal([]);
      const rows = await expectIntactChain(b);
      expect(rows.length).to.be.at.least(120);
      expect(new Set(rows.map((r) => r.seq)).size).to.equal(rows.length);
    });

    it('the same deterministic value tokenized on two connections at once gets one token', async () => {
      await a.insertDataKey(dataKey(1));
      const values = Array.from({ length: 20 }, (_, i) => Buffer.alloc(32, i + 1));
      const results = await Promise.all(
        values.flatMap((fingerprint, i) => [
          a.insertTokens([record(`tok_a${i}`, { fingerprint })], pending(), reuseHooks),
          b.insertTokens([record(`tok_b${i}`, { fingerprint })], pending(), reuseHooks),
        ]),
      );
      for (let i = 0; i < values.length; i++) {
        expect(results[2 * i], `value ${i}`).to.deep.equal(results[2 * i + 1]);
        expect(await b.findDeterministic('t', [{ type: 'text', fingerprint: values[i] }])).to.have.length(1);
      }
      expect(Object.fromEntries(await keptCounts(a))).to.deep.equal({ 't/1': values.length });
    });

    it('record counts stay exact under concurrent inserts and deletes; a record is deleted once', async () => {
      await a.insertDataKey(dataKey(1));
      const tokens = Array.from({ length: 40 }, (_, i) => `tok_${i}`);
      await a.insertTokens(
        tokens.slice(0, 20).map((t) => record(t)),
        pending(),
        plainHooks,
      );
      const deletions = new Map<string, number>();
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        const token = tokens[i];
        for (const store of [a, b]) {
          work.push(store.deleteToken('t', token, pending()).then((gone) => gone && deletions.set(token, (deletions.get(token) ?? 0) + 1)));
        }
        work.push((i % 2 ? a : b).insertTokens([record(tokens[20 + i])], pending(), plainHooks));
      }
      await Promise.all(work);
      expect([...deletions.values()]).to.deep.equal(Array(20).fill(1));
      expect(await keptCounts(b)).to.deep.equal(await countedRecords(b, tokens));
      expect(Object.fromEntries(await keptCounts(b))).to.deep.equal({ 't/1': 20 });
      await expectIntactChain(a);
    });

    it('a retire racing inserts into the version it retires never leaves a record behind (re-encryption target too)', async () => {
      await a.insertDataKey(dataKey(1));
      await a.insertTokens([record('tok_old')], pending(), plainHooks);
      await a.rotateDataKey(dataKey(2), pending(), 1);
      // Move the last record away while the other connection retires v1 as soon as it can.
      const move = a.replaceCiphertexts(
        [reencrypted('tok_old', { nonce: Buffer.alloc(12), ciphertext: Buffer.from('x'), tag: Buffer.alloc(16) })],
        'job',
        0,
        1,
      );
      const retire = b.changeDataKeyState({ tenant: 't', purpose: 'data', version: 1 }, 'decrypt-only', 'retired', pending());
      const [moved, retired] = await Promise.allSettled([move, retire]);
      expect(moved).to.deep.equal({ status: 'fulfilled', value: 1 });
      if (retired.status === 'rejected') expect(retired.reason).to.be.instanceOf(KeyInUseError);
      expect(await countedRecords(b, ['tok_old'])).to.deep.equal(new Map([['t/2', 1]]));
      expect(
        await rejection(b.changeDataKeyState({ tenant: 't', purpose: 'data', version: 2 }, 'active', 'retired', pending())),
      ).to.be.instanceOf(KeyInUseError);
    });

    it('job leases: of two instances claiming a job at once one holds it; the other takes it once it expires or is released', async () => {
      const LONG = 600_000;
      for (let round = 0; round < 10; round++) {
        await a.insertJob(job(`j${round}`));
        const claims = await Promise.all([a.leaseJob(`j${round}`, 'A', LONG), b.leaseJob(`j${round}`, 'B', LONG)]);
        expect(claims.filter(Boolean), `round ${round}`).to.have.length(1);
        const [holder, other] = claims[0] ? (['A', 'B'] as const) : (['B', 'A'] as const);
        expect(await a.leaseJob(`j${round}`, holder, LONG), 'the holder renews').to.equal(true);
        expect(await b.leaseJob(`j${round}`, other, LONG), 'a live lease is not taken').to.equal(false);
        await b.releaseJob(`j${round}`, other); // not the holder's: changes nothing
        expect(await b.leaseJob(`j${round}`, other, LONG)).to.equal(false);
        await a.releaseJob(`j${round}`, holder);
        expect(await b.leaseJob(`j${round}`, other, LONG), 'a released lease is taken at once').to.equal(true);
      }

      // A holder that stops renewing (it died) loses the job once its lease expires; it cannot renew after that.
      await a.insertJob(job('dies'));
      expect(await a.leaseJob('dies', 'A', 200)).to.equal(true);
      await waitFor(() => b.leaseJob('dies', 'B', LONG), { what: "B taking over A's expired lease" });
      expect(await a.leaseJob('dies', 'A', 200)).to.equal(false);

      await a.updateJob('dies', { state: 'completed' });
      expect(await b.leaseJob('dies', 'B', LONG), 'a finished job has no lease').to.equal(false);
      expect(await a.leaseJob('none', 'A', LONG)).to.equal(false);
    });
  });
}
