import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditEntry, AuditSealer, InsertHooks, StaleDataKeyError, TokenRecord } from '../../src/store/vault-store';
import { SqliteStore } from '../../src/store/sqlite-store';

const sealer: AuditSealer = { keyVersion: 1, seal: (prev, seq) => Buffer.concat([prev.subarray(0, 28), Buffer.from([0, 0, 0, seq])]) };
const entry = (): AuditEntry => ({
  ts: new Date().toISOString(),
  requestId: 'r',
  principal: 'p',
  tenant: 't',
  action: 'tokenize',
  types: ['text'],
  tokens: [],
  purpose: null,
  outcome: 'allow',
  reason: null,
  subjects: [],
});
const record = (token: string, keyVersion = 1): TokenRecord => ({
  token,
  tenant: 't',
  type: 'text',
  format: 'random',
  preserve: 'none',
  binding: 2,
  keyVersion,
  nonce: Buffer.alloc(12),
  ciphertext: Buffer.from('c'),
  tag: Buffer.alloc(16),
  fingerprint: null,
  subjectHash: null,
  subjectSealed: null,
  metadata: null,
  createdAt: 0,
  expiresAt: null,
});

const hooks = (retokenize: () => TokenRecord): InsertHooks => ({
  retokenize,
  resolveExisting: () => {
    throw new Error('no deterministic records here');
  },
});

describe('store / SqliteStore group commit', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pii-vault-group-'));
    store = new SqliteStore(join(dir, 'v.db'));
    await store.insertDataKey({
      tenant: 't',
      purpose: 'data',
      version: 1,
      state: 'active',
      kekId: 'local:v1',
      wrapped: Buffer.alloc(61),
      createdAt: 0,
      encryptions: 0,
    });
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('concurrent writes commit together in one transaction, and one failing write does not undo the others', async () => {
    // Each flush is one transaction (its writes are savepoints inside it).
    let transactions = 0;
    const internals = store as unknown as { flush: () => void };
    const flush = internals.flush.bind(store);
    internals.flush = () => {
      transactions++;
      flush();
    };
    const writes = Array.from({ length: 50 }, (_, i) =>
      store.insertTokens(
        [record(`tok_${i}`, i === 17 ? 9 : 1)],
        { entry: entry(), sealer },
        hooks(() => record(`tok_r${i}`)),
      ),
    );
    const results = await Promise.allSettled(writes);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(49);
    const failed = results[17] as PromiseRejectedResult;
    expect(failed.reason).to.be.instanceOf(StaleDataKeyError);
    expect((store.db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n).to.equal(49);
    // The audit chain stays gap-free: 49 rows, sequence 1..49.
    const seqs = (await store.auditRows(0, 100)).map((r) => r.seq);
    expect(seqs).to.deep.equal(Array.from({ length: 49 }, (_, i) => i + 1));
    expect(transactions).to.equal(1);
  });

  it('answers each caller only after the shared commit: a read right after an awaited write sees it', async () => {
    await Promise.all([
      store.insertTokens(
        [record('tok_a')],
        { entry: entry(), sealer },
        hooks(() => record('x')),
      ),
      store.appendAudit({ entry: entry(), sealer }),
    ]);
    expect((await store.findTokens(['tok_a'])).has('tok_a')).to.equal(true);
    expect(await store.auditRows(0, 10)).to.have.length(2);
  });
});
