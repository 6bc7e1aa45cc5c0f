import { expect } from 'chai';
import {
  AuditRow,
  AuditSegment,
  GENESIS_HASH,
  JobRecord,
  KeyInUseError,
  MAX_TOKEN_ATTEMPTS,
  ReencryptedRecord,
  StaleDataKeyError,
  StoreUnavailableError,
  TokenCollisionError,
  VaultStore,
} from '../../src/store/vault-store';
import type { StoreFactory, StoreUnderTest } from './factories';
import { countedRecords, dataKey, expectIntactChain, keptCounts, pending, plainHooks, record, rejection } from './fixtures';

/** Every VaultStore method's documented behaviour, through the interface only. */
export function describeStoreContract(factory: StoreFactory): void {
  describe('method contracts', () => {
    let opened: StoreUnderTest;
    let store: VaultStore;
    beforeEach(async () => {
      opened = await factory.open();
      store = opened.store;
      await store.insertDataKey(dataKey(1));
    });
    afterEach(() => opened.cleanup());

    it('ping answers; after close every call is StoreUnavailableError', async () => {
      await store.ping();
      await store.close();
      expect(await rejection(store.ping())).to.be.instanceOf(StoreUnavailableError);
      expect(await rejection(store.listDataKeys())).to.be.instanceOf(StoreUnavailableError);
    });

    it('data keys: insertDataKey is false for an existing version; reads return what was written', async () => {
      expect(await store.insertDataKey(dataKey(1))).to.equal(false);
      expect(await store.insertDataKey({ ...dataKey(1, 'active', 'u'), purpose: 'fingerprint' })).to.equal(true);
      expect(await store.activeDataKey('t', 'data')).to.deep.equal(dataKey(1));
      expect(await store.dataKey('t', 'data', 1)).to.deep.equal(dataKey(1));
      expect(await store.dataKey('t', 'data', 2)).to.equal(undefined);
      expect(await store.activeDataKey('u', 'data')).to.equal(undefined);
      expect((await store.listDataKeys()).map((k) => `${k.tenant}/${k.purpose}/${k.version}`)).to.deep.equal([
        't/data/1',
        'u/fingerprint/1',
      ]);
    });

    it('insertTokens stores the batch with one audit row naming its tokens, and counts records and seals', async () => {
      const subject = { subjectHash: Buffer.alloc(32, 7), subjectSealed: Buffer.from('sealed subject') };
      const tokens = await store.insertTokens([record('tok_a'), record('tok_b', subject)], pending(), plainHooks);
      expect(tokens).to.deep.equal(['tok_a', 'tok_b']);
      const found = await store.findTokens(['tok_a', 'tok_b', 'tok_none']);
      expect([...found.keys()]).to.have.members(['tok_a', 'tok_b']);
      const { subjectRow, ...stored } = found.get('tok_b')![0];
      expect(stored).to.deep.equal(record('tok_b', subject));
      expect(subjectRow!.handle).to.have.length(16);
      const [row] = await expectIntactChain(store);
      expect(row.tokens).to.deep.equal(['tok_a', 'tok_b']);
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 2 });
      expect((await store.dataKey('t', 'data', 1))!.encryptions, 'one seal per value, one per subject id').to.equal(3);
    });

    it('insertTokens under a key version that is not active throws StaleDataKeyError and writes nothing', async () => {
      await store.insertDataKey(dataKey(2, 'decrypt-only'));
      expect(await rejection(store.insertTokens([record('tok_a', { keyVersion: 2 })], pending(), plainHooks))).to.be.instanceOf(
        StaleDataKeyError,
      );
      expect(await rejection(store.insertTokens([record('tok_b', { keyVersion: 9 })], pending(), plainHooks))).to.be.instanceOf(
        StaleDataKeyError,
      );
      expect((await store.findTokens(['tok_a', 'tok_b'])).size).to.equal(0);
      expect(await store.auditHead()).to.equal(undefined);
      expect((await store.recordCountsByKey()).size).to.equal(0);
    });

    it('a token taken in its tenant is retokenized (each attempt a counted seal); other tenants never collide', async () => {
      await store.insertDataKey(dataKey(1, 'active', 'u'));
      await store.insertTokens([record('tok_a')], pending(), plainHooks);
      const asked: number[] = [];
      const hooks = { ...plainHooks, retokenize: (index: number) => (asked.push(index), record('tok_fresh')) };
      expect(await store.insertTokens([record('tok_x'), record('tok_a')], pending(), hooks)).to.deep.equal(['tok_x', 'tok_fresh']);
      expect(asked).to.deep.equal([1]);
      expect((await store.dataKey('t', 'data', 1))!.encryptions).to.equal(4);
      expect(await store.insertTokens([record('tok_a', { tenant: 'u' })], pending('u'), plainHooks)).to.deep.equal(['tok_a']);
      expect((await store.findTokens(['tok_a'])).get('tok_a')!.map((r) => r.tenant)).to.have.members(['t', 'u']);
      expect(await expectIntactChain(store)).to.have.length(3);
    });

    it('a token twice in one batch: the later record is retokenized; a batch of many random tokens keeps its order', async () => {
      const asked: number[] = [];
      const hooks = { ...plainHooks, retokenize: (index: number) => (asked.push(index), record(`tok_fresh${index}`)) };
      const batch = [record('tok_a'), record('tok_b'), record('tok_a'), ...Array.from({ length: 20 }, (_, i) => record(`tok_${i}`))];
      const tokens = await store.insertTokens(batch, pending(), hooks);
      expect(tokens).to.deep.equal(['tok_a', 'tok_b', 'tok_fresh2', ...Array.from({ length: 20 }, (_, i) => `tok_${i}`)]);
      expect(asked).to.deep.equal([2]);
      expect((await store.dataKey('t', 'data', 1))!.encryptions).to.equal(24);
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 23 });
      expect((await expectIntactChain(store))[0].tokens).to.deep.equal(tokens);
    });

    it('gives up with TokenCollisionError after MAX_TOKEN_ATTEMPTS, writing nothing', async () => {
      await store.insertTokens([record('tok_a')], pending(), plainHooks);
      let asked = 0;
      const hooks = { ...plainHooks, retokenize: () => (asked++, record('tok_a')) };
      expect(await rejection(store.insertTokens([record('tok_b'), record('tok_a')], pending(), hooks))).to.be.instanceOf(
        TokenCollisionError,
      );
      expect(asked).to.equal(MAX_TOKEN_ATTEMPTS - 1);
      expect((await store.findTokens(['tok_b'])).size).to.equal(0);
      expect((await store.auditHead())!.seq).to.equal(1);
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 1 });
    });

    it('whatever a hook throws is rethrown with nothing written', async () => {
      const fp = { fingerprint: Buffer.alloc(32, 1) };
      await store.insertTokens([record('tok_a', fp)], pending(), plainHooks);
      const refusal = new Error('refused by the hook');
      const hooks = {
        ...plainHooks,
        resolveExisting: () => {
          throw refusal;
        },
      };
      expect(await rejection(store.insertTokens([record('tok_b'), record('tok_c', fp)], pending(), hooks))).to.equal(refusal);
      expect((await store.findTokens(['tok_b', 'tok_c'])).size).to.equal(0);
      expect((await store.auditHead())!.seq).to.equal(1);
    });

    it('deterministic records: the hook sees stored records of the identity (this batch too), and reuse or replace them', async () => {
      const fp = Buffer.alloc(32, 1);
      const seen: string[][] = [];
      const hooks = {
        ...plainHooks,
        resolveExisting: (index: number, existing: { token: string }[]) => (
          seen.push(existing.map((r) => r.token)),
          { reuse: existing[0].token }
        ),
      };
      // Another type, another tenant or another fingerprint is another identity.
      await store.insertDataKey(dataKey(1, 'active', 'u'));
      await store.insertTokens([record('tok_u', { tenant: 'u', fingerprint: fp })], pending('u'), plainHooks);
      await store.insertTokens([record('tok_pan', { type: 'pan', fingerprint: fp })], pending(), plainHooks);
      expect(
        await store.insertTokens([record('tok_a', { fingerprint: fp }), record('tok_b', { fingerprint: fp })], pending(), hooks),
      ).to.deep.equal(['tok_a', 'tok_a']);
      expect(seen).to.deep.equal([['tok_a']]);
      expect((await store.findDeterministic('t', [{ type: 'text', fingerprint: fp }])).map((r) => r.token)).to.deep.equal(['tok_a']);
      expect(
        (
          await store.findDeterministic('t', [
            { type: 'text', fingerprint: fp },
            { type: 'pan', fingerprint: fp },
          ])
        ).map((r) => r.token),
      ).to.have.members(['tok_a', 'tok_pan']);

      const replace = { ...plainHooks, resolveExisting: () => ({ replace: ['tok_a'] }) };
      expect(await store.insertTokens([record('tok_c', { fingerprint: fp })], pending(), replace)).to.deep.equal(['tok_c']);
      expect((await store.findTokens(['tok_a'])).size).to.equal(0);
      const last = (await expectIntactChain(store)).at(-1)!;
      expect(last.reason).to.equal('replaced expired deterministic tokens: tok_a');
      expect(await keptCounts(store)).to.deep.equal(await countedRecords(store, ['tok_a', 'tok_c', 'tok_pan']));
      expect(Object.fromEntries(await keptCounts(store))).to.deep.equal({ 't/1': 2 });
    });

    it('deleteToken deletes only in its tenant, audits only a deletion, and keeps the counts', async () => {
      await store.insertTokens([record('tok_a'), record('tok_b')], pending(), plainHooks);
      expect(await store.deleteToken('other', 'tok_a', pending())).to.equal(false);
      expect(await store.deleteToken('t', 'tok_a', pending())).to.equal(true);
      expect(await store.deleteToken('t', 'tok_a', pending())).to.equal(false);
      expect((await expectIntactChain(store)).map((r) => r.seq)).to.deep.equal([1, 2]);
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 1 });
    });

    it('rotateDataKey demotes the active key and activates the next, unless the version exists or another rotation won', async () => {
      expect(await store.rotateDataKey(dataKey(2), pending(), 1)).to.equal(true);
      expect((await store.dataKey('t', 'data', 1))!.state).to.equal('decrypt-only');
      expect((await store.activeDataKey('t', 'data'))!.version).to.equal(2);
      expect(await store.rotateDataKey(dataKey(3), pending(), 1), 'expected v1, but v2 is active').to.equal(false);
      expect(await store.rotateDataKey(dataKey(2), pending()), 'v2 exists').to.equal(false);
      expect(await store.rotateDataKey(dataKey(3), pending())).to.equal(true);
      expect((await store.listDataKeys()).map((k) => k.state)).to.deep.equal(['decrypt-only', 'decrypt-only', 'active']);
      expect(await expectIntactChain(store)).to.have.length(2);
    });

    it('updateWrappedKey replaces the wrapping only if it is still as read and the key is not destroyed', async () => {
      const key = { tenant: 't', purpose: 'data' as const, version: 1 };
      const from = { kekId: 'local:v1', wrapped: Buffer.alloc(61, 1) };
      const to = { kekId: 'local:v2', wrapped: Buffer.alloc(61, 9) };
      expect(await store.updateWrappedKey(key, { ...from, kekId: 'local:v0' }, to)).to.equal(false);
      expect(await store.updateWrappedKey(key, from, to)).to.equal(true);
      expect(await store.dataKey('t', 'data', 1)).to.deep.include(to);
      expect(await store.updateWrappedKey(key, from, to), 'no longer as read').to.equal(false);
      await store.rotateDataKey(dataKey(2), pending());
      await store.changeDataKeyState(key, 'decrypt-only', 'retired', pending());
      await store.changeDataKeyState(key, 'retired', 'destroyed', pending());
      expect(await store.updateWrappedKey(key, { kekId: 'local:v2', wrapped: Buffer.alloc(61, 9) }, from)).to.equal(false);
    });

    it('changeDataKeyState: KeyInUseError while records use the version; false from another state; destroy drops the material', async () => {
      const v1 = { tenant: 't', purpose: 'data' as const, version: 1 };
      await store.insertTokens([record('tok_a')], pending(), plainHooks);
      await store.rotateDataKey(dataKey(2), pending(), 1);
      expect(await store.changeDataKeyState(v1, 'active', 'retired', pending()), 'not in that state').to.equal(false);
      const inUse = await rejection(store.changeDataKeyState(v1, 'decrypt-only', 'retired', pending()));
      expect(inUse).to.be.instanceOf(KeyInUseError);
      expect((inUse as KeyInUseError).records).to.equal(1);
      expect((await store.dataKey('t', 'data', 1))!.state).to.equal('decrypt-only');
      expect(await store.auditHead()).to.deep.include({ seq: 2 });

      await store.deleteToken('t', 'tok_a', pending());
      expect(await store.changeDataKeyState(v1, 'decrypt-only', 'retired', pending())).to.equal(true);
      expect(await store.changeDataKeyState(v1, 'retired', 'destroyed', pending())).to.equal(true);
      expect(await store.dataKey('t', 'data', 1)).to.deep.include({ state: 'destroyed', wrapped: null });
      expect(await expectIntactChain(store)).to.have.length(5);
    });

    it('recordsBehind and replaceCiphertexts: only records still as read are swapped; counts and progress follow', async () => {
      await store.insertTokens([record('tok_a'), record('tok_b'), record('tok_c')], pending(), plainHooks);
      await store.rotateDataKey(dataKey(2), pending(), 1);
      await store.insertTokens([record('tok_d', { keyVersion: 2 })], pending(), plainHooks);
      const job: JobRecord = {
        id: 'job-1',
        kind: 'reencrypt',
        tenants: ['t'],
        state: 'running',
        total: 3,
        done: 0,
        failed: 0,
        requestedBy: 'p',
        createdAt: 1,
        updatedAt: 1,
        finishedAt: null,
        error: null,
      };
      await store.insertJob(job);
      const behind = await store.recordsBehind('t', 2, 2, '', 10);
      expect(behind.map((r) => r.token)).to.deep.equal(['tok_a', 'tok_b', 'tok_c']);
      expect((await store.recordsBehind('t', 2, 2, 'tok_a', 1)).map((r) => r.token)).to.deep.equal(['tok_b']);
      const update = (token: string, fromVersion = 1): ReencryptedRecord => ({
        token,
        tenant: 't',
        fromVersion,
        fromBinding: 2,
        keyVersion: 2,
        binding: 2,
        preserve: 'none',
        nonce: Buffer.alloc(12, 5),
        ciphertext: Buffer.from(`new ${token}`),
        tag: Buffer.alloc(16, 5),
        subjectSealed: null,
      });
      expect(await store.replaceCiphertexts([update('tok_a'), update('tok_b', 3)], 'job-1', 1, 5)).to.equal(1);
      expect((await store.findTokens(['tok_a'])).get('tok_a')![0]).to.deep.include({ keyVersion: 2, ciphertext: Buffer.from('new tok_a') });
      expect(await store.job('job-1')).to.deep.include({ done: 1, failed: 1, updatedAt: 5 });
      expect(Object.fromEntries(await store.recordCountsByKey())).to.deep.equal({ 't/1': 2, 't/2': 2 });
      expect((await store.dataKey('t', 'data', 2))!.encryptions).to.equal(2);

      await store.rotateDataKey(dataKey(3), pending(), 2);
      expect(await rejection(store.replaceCiphertexts([update('tok_b')], 'job-1', 0, 6))).to.be.instanceOf(StaleDataKeyError);
      expect((await store.findTokens(['tok_b'])).get('tok_b')![0].keyVersion).to.equal(1);
      expect(await store.job('job-1')).to.deep.include({ done: 1, updatedAt: 5 });
    });

    it('recordsBehind: a record of the active version is behind only below the given binding (binding 1, not 3)', async () => {
      await store.insertTokens(
        [record('tok_1', { binding: 1 }), record('tok_2', { binding: 2 }), record('tok_3', { binding: 3 })],
        pending(),
        plainHooks,
      );
      expect((await store.recordsBehind('t', 1, 2, '', 10)).map((r) => r.token)).to.deep.equal(['tok_1']);
    });

    it('jobs: insert, read, update given fields, list the running ones oldest first', async () => {
      const job = (id: string, createdAt: number): JobRecord => ({
        id,
        kind: 'reencrypt',
        tenants: ['t', 'u'],
        state: 'running',
        total: 0,
        done: 0,
        failed: 0,
        requestedBy: 'p',
        createdAt,
        updatedAt: createdAt,
        finishedAt: null,
        error: null,
      });
      await store.insertJob(job('b', 2));
      await store.insertJob(job('a', 1));
      await store.insertJob(job('c', 3));
      expect(await store.job('a')).to.deep.equal(job('a', 1));
      expect(await store.job('none')).to.equal(undefined);
      await store.updateJob('c', { state: 'completed', finishedAt: 9, total: 4 });
      expect(await store.job('c')).to.deep.equal({ ...job('c', 3), state: 'completed', finishedAt: 9, total: 4 });
      expect((await store.unfinishedJobs()).map((j) => j.id)).to.deep.equal(['a', 'b']);
    });

    it('audit: appends chain from the head; rows by tenant in seq order; head and checkpoint as written', async () => {
      const rows = [];
      for (const tenant of ['t', 'u', null, 't', 'u']) rows.push(await store.appendAudit(pending(tenant)));
      expect(rows.map((r) => r.seq)).to.deep.equal([1, 2, 3, 4, 5]);
      expect(rows[0].prevHash.equals(GENESIS_HASH)).to.equal(true);
      expect(await expectIntactChain(store)).to.deep.equal(rows);
      expect((await store.auditRows(1, 2)).map((r) => r.seq)).to.deep.equal([2, 3]);
      expect((await store.auditRows(0, 10, ['u', 't'])).map((r) => r.seq)).to.deep.equal([1, 2, 4, 5]);
      expect((await store.auditRows(1, 2, ['u', 't'])).map((r) => r.seq)).to.deep.equal([2, 4]);
      expect(await store.auditHead()).to.deep.equal({ seq: 5, hash: rows[4].hash });

      expect(await store.auditCheckpoint()).to.equal(undefined);
      const checkpoint = { seq: 3, hash: rows[2].hash, keyVersion: 1, createdAt: 'then', mac: Buffer.alloc(32, 3) };
      await store.saveAuditCheckpoint(checkpoint);
      await store.saveAuditCheckpoint({ ...checkpoint, seq: 4, hash: rows[3].hash });
      expect(await store.auditCheckpoint()).to.deep.equal({ ...checkpoint, seq: 4, hash: rows[3].hash });
      expect((await store.auditHead())!.seq, 'a checkpoint writes no audit row').to.equal(5);
    });

    it('pruneAuditSegment prunes only a segment still as archived; an emptied log continues from the last segment', async () => {
      const rows: AuditRow[] = [];
      for (let i = 0; i < 4; i++) rows.push(await store.appendAudit(pending()));
      const segment = (fromSeq: number, throughSeq: number): AuditSegment => ({
        fromSeq,
        throughSeq,
        prevHash: rows[fromSeq - 2]?.hash ?? GENESIS_HASH,
        headHash: rows[throughSeq - 1].hash,
        archivedAt: 'now',
        keyVersion: 1,
        mac: Buffer.alloc(32, fromSeq),
      });
      expect(await store.pruneAuditSegment(segment(2, 3), pending()), 'does not start at row 1').to.equal(false);
      expect(await store.pruneAuditSegment({ ...segment(1, 2), headHash: Buffer.alloc(32) }, pending()), 'head differs').to.equal(false);
      expect(await store.pruneAuditSegment(segment(1, 2), pending())).to.equal(true);
      expect(await store.auditSegments()).to.deep.equal([segment(1, 2)]);
      expect((await store.auditRows(0, 10)).map((r) => r.seq)).to.deep.equal([3, 4, 5]);
      expect(await store.pruneAuditSegment(segment(1, 2), pending()), 'already pruned').to.equal(false);

      const rest = await store.auditRows(0, 10);
      rows.push(rest[2]); // row 5: the first prune's own audit row
      expect(await store.pruneAuditSegment(segment(3, 5), pending())).to.equal(true);
      const emptiedThenAppended = await store.auditRows(0, 10);
      expect(emptiedThenAppended.map((r) => r.seq)).to.deep.equal([6]);
      const next = await store.appendAudit(pending());
      expect(next.seq).to.equal(7);
      await expectIntactChain(store, 6, rest[2].hash);
    });
  });
}
