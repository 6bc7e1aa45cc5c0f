import { expect } from 'chai';
import type { VaultStore } from '../../src/store/vault-store';
import type { StoreFactory, StoreUnderTest } from './factories';
import { countedRecords, dataKey, expectIntactChain, job, keptCounts, pending, plainHooks, record, reencrypted, turns } from './fixtures';

const SUBJECT = Buffer.alloc(32, 7);
const OTHER = Buffer.alloc(32, 8);
const ofSubject = (token: string, subjectHash = SUBJECT, keyVersion = 1) =>
  record(token, { subjectHash, subjectSealed: Buffer.from(`sealed subject of ${token}`), keyVersion });
const hex = (b: Buffer) => b.toString('hex');

/** Subject rows, consent, the audit index by handle and erasure: the data subject methods of the seam. */
export function describeStoreSubjects(factory: StoreFactory): void {
  describe('data subjects', () => {
    let opened: StoreUnderTest;
    let store: VaultStore;
    beforeEach(async () => {
      opened = await factory.open();
      store = opened.store;
      await store.insertDataKey(dataKey(1));
    });
    afterEach(() => opened.cleanup());

    it('insertTokens creates one subject row per subject (a random 16-byte handle) and names the handles in its audit row', async () => {
      await store.insertTokens([ofSubject('tok_a'), ofSubject('tok_b'), ofSubject('tok_c', OTHER), record('tok_d')], pending(), plainHooks);
      const handle = (await store.subject('t', SUBJECT))!.handle;
      const other = (await store.subject('t', OTHER))!.handle;
      expect(handle).to.have.length(16);
      expect(handle.equals(other)).to.equal(false);
      expect(await store.subject('u', SUBJECT), 'subject rows are per tenant').to.equal(undefined);
      const [row] = await expectIntactChain(store);
      expect(row.subjects).to.have.members([hex(handle), hex(other)]);
      expect(row.subjects.join()).not.to.contain(hex(SUBJECT));

      // A later record of the subject keeps its handle; findTokens reads it (and the consent) with the record.
      await store.insertTokens([ofSubject('tok_e')], pending(), plainHooks);
      const found = await store.findTokens(['tok_a', 'tok_e', 'tok_d']);
      expect(found.get('tok_e')![0].subjectRow).to.deep.equal({ handle, purposes: null });
      expect(found.get('tok_a')![0].subjectRow!.handle.equals(handle)).to.equal(true);
      expect(found.get('tok_d')![0].subjectRow).to.equal(null);
      expect((await store.auditRowsOfSubject(handle, 0, 10)).map((r) => r.seq)).to.deep.equal([1, 2]);
      expect((await store.auditRowsOfSubject(other, 0, 10)).map((r) => r.seq)).to.deep.equal([1]);
    });

    it('insertTokens adds consented purposes to the subject, in the same transaction; without consents none are recorded', async () => {
      await store.insertTokens([ofSubject('tok_a')], pending(), plainHooks, [{ subjectHash: SUBJECT, purposes: ['billing'] }]);
      await store.insertTokens([ofSubject('tok_b'), ofSubject('tok_c', OTHER)], pending(), plainHooks, [
        { subjectHash: SUBJECT, purposes: ['charge', 'billing'] },
      ]);
      expect((await store.subject('t', SUBJECT))!.purposes).to.deep.equal(['billing', 'charge']);
      expect((await store.subject('t', OTHER))!.purposes).to.equal(null);
      expect((await store.findTokens(['tok_a'])).get('tok_a')![0].subjectRow!.purposes).to.deep.equal(['billing', 'charge']);
    });

    it('changeConsent grants and withdraws (creating the subject row if needed), audited under the handle', async () => {
      const created = await store.changeConsent('t', SUBJECT, { grant: ['billing', 'charge'], withdraw: [] }, 1, pending());
      expect(created.purposes).to.deep.equal(['billing', 'charge']);
      const changed = await store.changeConsent('t', SUBJECT, { grant: ['support'], withdraw: ['charge'] }, 2, pending());
      expect(changed).to.deep.equal({ handle: created.handle, purposes: ['billing', 'support'] });
      expect(await store.subject('t', SUBJECT)).to.deep.equal(changed);
      // Withdrawing from a subject without recorded consent leaves nothing consented (not "no restriction").
      expect((await store.changeConsent('t', OTHER, { grant: [], withdraw: ['charge'] }, 3, pending())).purposes).to.deep.equal([]);
      const rows = await expectIntactChain(store);
      expect(rows.map((r) => r.subjects)).to.deep.equal([
        [hex(created.handle)],
        [hex(created.handle)],
        [hex((await store.subject('t', OTHER))!.handle)],
      ]);
      expect((await store.auditRowsOfSubject(created.handle, 0, 10)).map((r) => r.seq)).to.deep.equal([1, 2]);
    });

    it('a consented set above 32 purposes is refused, by changeConsent and by insertTokens, writing nothing', async () => {
      const named = (from: number, n: number) => Array.from({ length: n }, (_, i) => `purpose_${from + i}`);
      await store.changeConsent('t', SUBJECT, { grant: named(0, 30), withdraw: [] }, 1, pending());
      const refused = async (write: Promise<unknown>) => {
        const outcome = await write.then(
          () => 'stored',
          (err: { code?: string }) => err.code,
        );
        expect(outcome).to.equal('too_many_purposes');
      };
      await refused(store.changeConsent('t', SUBJECT, { grant: named(30, 3), withdraw: [] }, 2, pending()));
      await refused(store.insertTokens([ofSubject('tok_a')], pending(), plainHooks, [{ subjectHash: SUBJECT, purposes: named(30, 3) }]));
      expect((await store.subject('t', SUBJECT))!.purposes).to.deep.equal(named(0, 30));
      expect(await store.findTokens(['tok_a'])).to.have.property('size', 0);
      expect(await expectIntactChain(store)).to.have.length(1);
      // Withdrawing and granting in one change counts what is left.
      const changed = await store.changeConsent('t', SUBJECT, { grant: named(30, 2), withdraw: named(0, 1) }, 3, pending());
      expect(changed.purposes).to.have.length(31);
    });

    it('the audit append indexes the handles a row names (not HMACs, not duplicates); auditRowsOfSubject pages by seq', async () => {
      const handle = Buffer.alloc(16, 1);
      for (let i = 0; i < 5; i++) {
        const audit = pending();
        audit.entry.subjects = i % 2 ? [hex(handle), hex(handle), hex(SUBJECT)] : [hex(SUBJECT)];
        await store.appendAudit(audit);
      }
      expect((await store.auditRowsOfSubject(handle, 0, 10)).map((r) => r.seq)).to.deep.equal([2, 4]);
      expect((await store.auditRowsOfSubject(handle, 2, 10)).map((r) => r.seq)).to.deep.equal([4]);
      expect((await store.auditRowsOfSubject(handle, 0, 1)).map((r) => r.seq)).to.deep.equal([2]);
      expect(await store.auditRowsOfSubject(SUBJECT.subarray(0, 16), 0, 10)).to.deep.equal([]);
    });

    it('subjectRecords pages the records of one subject in token order, with the subject row', async () => {
      const tokens = Array.from({ length: 7 }, (_, i) => `tok_${i}`);
      await store.insertTokens([...tokens.map((t) => ofSubject(t)), ofSubject('tok_other', OTHER)], pending(), plainHooks);
      const first = await store.subjectRecords('t', SUBJECT, '', 3);
      const rest = await store.subjectRecords('t', SUBJECT, first[2].token, 10);
      expect([...first, ...rest].map((r) => r.token)).to.deep.equal(tokens);
      expect(first[0].subjectRow!.handle.equals((await store.subject('t', SUBJECT))!.handle)).to.equal(true);
      expect(await store.subjectRecords('u', SUBJECT, '', 10)).to.deep.equal([]);
    });

    it('eraseSubject deletes the records, the subject row and its index entries in one audited transaction; others stay', async () => {
      await store.insertDataKey(dataKey(2, 'decrypt-only'));
      await store.insertTokens([ofSubject('tok_a'), ofSubject('tok_b'), ofSubject('tok_c', OTHER), record('tok_d')], pending(), plainHooks);
      const handle = (await store.subject('t', SUBJECT))!.handle;
      expect(await store.eraseSubject('t', SUBJECT, pending())).to.deep.equal({ records: 2 });
      expect([...(await store.findTokens(['tok_a', 'tok_b', 'tok_c', 'tok_d'])).keys()]).to.deep.equal(['tok_c', 'tok_d']);
      expect(await store.subject('t', SUBJECT)).to.equal(undefined);
      expect(await store.auditRowsOfSubject(handle, 0, 10)).to.deep.equal([]);
      expect(await store.subjectRecords('t', SUBJECT, '', 10)).to.deep.equal([]);
      expect(await store.subject('t', OTHER)).not.to.equal(undefined);
      expect(await keptCounts(store)).to.deep.equal(await countedRecords(store, ['tok_a', 'tok_b', 'tok_c', 'tok_d']));
      const rows = await expectIntactChain(store);
      expect(rows[1].subjects, 'the erasure row names no subject').to.deep.equal([]);
      expect(rows[1].reason).to.equal('erased 2 records and the subject row');
      // Erasing again finds nothing, and is still audited.
      expect(await store.eraseSubject('t', SUBJECT, pending())).to.deep.equal({ records: 0 });
      expect(await expectIntactChain(store)).to.have.length(3);
    });

    describe('erasure interleavings (two connections)', () => {
      let b: VaultStore;
      beforeEach(function () {
        if (!opened.second) return this.skip();
        b = opened.second;
      });

      it('concurrent first tokenizes of one subject share one subject row (one handle)', async () => {
        for (let round = 0; round < 8; round++) {
          const subject = Buffer.alloc(32, 100 + round);
          const audits = [pending(), pending()];
          await Promise.all([
            store.insertTokens([ofSubject(`tok_${round}_a`, subject)], audits[0], plainHooks, [{ subjectHash: subject, purposes: ['a'] }]),
            b.insertTokens([ofSubject(`tok_${round}_b`, subject)], audits[1], plainHooks, [{ subjectHash: subject, purposes: ['b'] }]),
          ]);
          const row = (await store.subject('t', subject))!;
          expect(audits.map((a) => a.entry.subjects)).to.deep.equal([[hex(row.handle)], [hex(row.handle)]]);
          expect([...row.purposes!].sort(), 'no consent lost').to.deep.equal(['a', 'b']);
        }
        await expectIntactChain(store);
      });

      it('tokenize vs erase of the same subject: every stored record of a subject has its subject row; erased records are gone', async () => {
        const tokens: string[] = [];
        for (let round = 0; round < 10; round++) {
          const batch = [`tok_${round}_a`, `tok_${round}_b`];
          const subject = Buffer.alloc(32, 150 + round);
          tokens.push(...batch);
          const [, erased] = await Promise.all([
            store.insertTokens(
              batch.map((t) => ofSubject(t, subject)),
              pending(),
              plainHooks,
            ),
            (async () => {
              for (let i = 0; i < round % 4; i++) await new Promise(setImmediate);
              return b.eraseSubject('t', subject, pending());
            })(),
          ]);
          const found = await store.findTokens(batch);
          // Either the erasure came after the insert (it took both) or before (both stay, under a new subject row).
          expect(found.size, `round ${round}`).to.equal(erased.records === 2 ? 0 : 2);
          if (found.size) expect(erased.records, `round ${round}`).to.equal(0);
          for (const records of found.values()) {
            expect(records[0].subjectRow!.handle.equals((await store.subject('t', subject))!.handle), `round ${round}`).to.equal(true);
          }
        }
        expect(await keptCounts(store)).to.deep.equal(await countedRecords(store, tokens));
        await expectIntactChain(store);
      });

      it('a re-encryption swap vs an erasure of its record: the record is gone and the counts stay exact', async () => {
        const tokens = Array.from({ length: 8 }, (_, i) => `tok_${i}`);
        const subjectOf = (i: number) => Buffer.alloc(32, 50 + i);
        await store.insertTokens(
          tokens.map((t, i) => ofSubject(t, subjectOf(i))),
          pending(),
          plainHooks,
        );
        expect(await store.rotateDataKey(dataKey(2), pending(), 1)).to.equal(true);
        await store.insertJob(job('job'));
        for (const [i, token] of tokens.entries()) {
          const swap = reencrypted(token, { subjectSealed: Buffer.from('resealed subject') });
          const [swapped, erased] = await Promise.all([
            store.replaceCiphertexts([swap], 'job', 0, 1),
            (async () => {
              await turns(i % 3);
              return b.eraseSubject('t', subjectOf(i), pending());
            })(),
          ]);
          expect(erased.records, `round ${i}`).to.equal(1);
          expect(swapped).to.be.oneOf([0, 1]);
          expect((await store.findTokens([token])).size).to.equal(0);
        }
        expect(await keptCounts(store), 'no record left at either version').to.deep.equal(new Map());
        await expectIntactChain(store);
      });

      it('a purge vs an erasure of the same expired records: each is deleted and counted once, by one of them', async () => {
        for (let round = 0; round < 8; round++) {
          const subject = Buffer.alloc(32, 230 + round);
          const batch = ['a', 'b', 'c'].map((x) => `tok_p${round}_${x}`);
          await store.insertTokens(
            batch.map((t) => record(t, { subjectHash: subject, subjectSealed: Buffer.from('sealed'), expiresAt: 1 })),
            pending(),
            plainHooks,
          );
          const [purged, erased] = await Promise.all([
            store.purgeExpired(10, 2, pending()),
            (async () => {
              for (let i = 0; i < round % 3; i++) await new Promise(setImmediate);
              return b.eraseSubject('t', subject, pending());
            })(),
          ]);
          const purgedRecords = purged.reduce((n, c) => n + c.records, 0);
          expect(purgedRecords + erased.records, `round ${round}: ${purgedRecords} purged, ${erased.records} erased`).to.equal(3);
          expect((await store.findTokens(batch)).size, `round ${round}`).to.equal(0);
        }
        expect(await keptCounts(store)).to.deep.equal(new Map());
        await expectIntactChain(store);
      });

      it('two erasures at once: one deletes the records, the other finds none; the counts drop once', async () => {
        for (let round = 0; round < 6; round++) {
          const subject = Buffer.alloc(32, 200 + round);
          await store.insertTokens([ofSubject(`tok_${round}_a`, subject), ofSubject(`tok_${round}_b`, subject)], pending(), plainHooks);
          const results = await Promise.all([store.eraseSubject('t', subject, pending()), b.eraseSubject('t', subject, pending())]);
          expect(results.map((r) => r.records).sort(), `round ${round}`).to.deep.equal([0, 2]);
        }
        expect(await keptCounts(store)).to.deep.equal(new Map());
        await expectIntactChain(store);
      });
    });
  });
}
