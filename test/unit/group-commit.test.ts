import { expect } from 'chai';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InsertHooks, StaleDataKeyError, TokenRecord } from '../../src/store/vault-store';
import { SqliteStore } from '../../src/store/sqlite-store';
import { activeDataKey, auditEntry, testSealer as sealer, tokenRecord as record } from '../helpers/store-fixtures';
import { sqliteStoreIn, withTempStore } from '../helpers/temp-store';
import { waitFor } from '../helpers/wait-for';

const entry = auditEntry;

const hooks = (retokenize: () => TokenRecord): InsertHooks => ({
  retokenize,
  resolveExisting: () => {
    throw new Error('no deterministic records here');
  },
});

describe('store / SqliteStore group commit', () => {
  const stores = withTempStore();
  let store: SqliteStore;
  beforeEach(async () => {
    store = await stores.open();
    await store.insertDataKey(activeDataKey());
  });

  it('concurrent writes commit together in one transaction, and one failing write does not undo the others', async () => {
    // Each flush is one transaction (its writes are savepoints inside it).
    let transactions = 0;
    const internals = (store as unknown as { writer: { flush: () => void } }).writer;
    const flush = internals.flush.bind(internals);
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

  it('answers each caller only after the shared commit: another connection sees the write as soon as it is acknowledged', async () => {
    // A second connection sees committed data only (the store's own connection would also see its uncommitted writes).
    const other = new Database(store.file, { readonly: true });
    try {
      const seen: Array<{ token: boolean; audit: number }> = [];
      const look = () => ({
        token: other.prepare('SELECT 1 FROM tokens WHERE token = ?').get('tok_a') !== undefined,
        audit: (other.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n,
      });
      await Promise.all([
        store
          .insertTokens(
            [record('tok_a')],
            { entry: entry(), sealer },
            hooks(() => record('x')),
          )
          .then(() => seen.push(look())),
        store.appendAudit({ entry: entry(), sealer }).then(() => seen.push(look())),
      ]);
      expect(seen).to.deep.equal([
        { token: true, audit: 2 },
        { token: true, audit: 2 },
      ]);
    } finally {
      other.close();
    }
  });
});

describe('store / SqliteStore with two processes on one database', function () {
  this.timeout(60_000);
  const stores = withTempStore(sqliteStoreIn(30_000));

  it('a write waits for the write lock another process holds (databaseBusyTimeoutMs) instead of failing at once with 503', async () => {
    const store = await stores.open();
    await store.insertDataKey(activeDataKey());
    const marker = join(stores.dir, 'writing');
    const holder = spawn(process.execPath, [join(__dirname, '..', 'helpers', 'lock-holder.js'), store.file, marker, '300'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    holder.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    holder.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => holder.once('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', () => out.includes('locked') && resolve());
        holder.once('exit', () => reject(new Error(`lock holder exited: ${out}`)));
      });
      // The holder commits 300 ms after it sees this file: our writes start while it holds the lock.
      writeFileSync(marker, '');
      const writes = await Promise.allSettled([
        store.insertTokens(
          [record('tok_1')],
          { entry: entry(), sealer },
          hooks(() => record('tok_r1')),
        ),
        store.insertTokens(
          [record('tok_2')],
          { entry: entry(), sealer },
          hooks(() => record('tok_r2')),
        ),
        store.appendAudit({ entry: entry(), sealer }),
      ]);
      expect(writes.map((w) => (w.status === 'rejected' ? String(w.reason) : 'ok'))).to.deep.equal(['ok', 'ok', 'ok']);
      expect(await exited, out).to.equal(0);
      // Order of events: the holder's row (written under its lock) is #1; ours come after it.
      expect((await store.auditRows(0, 10)).map((r) => r.seq)).to.deep.equal([1, 2, 3, 4]);
      expect((await store.findTokens(['tok_1', 'tok_2'])).size).to.equal(2);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('store / SqliteStore WAL purge after a deletion', () => {
  const stores = withTempStore(sqliteStoreIn(50));
  let store: SqliteStore;
  const file = () => store.file;
  const walHolds = (needle: Buffer) => existsSync(`${file()}-wal`) && readFileSync(`${file()}-wal`).includes(needle);
  beforeEach(async () => {
    store = await stores.open();
    await store.insertDataKey(activeDataKey());
  });

  it('while another connection holds a read snapshot: answers after the busy timeout, warns, and purges once the reader lets go', async () => {
    const doomed = { ...record('tok_doomed'), ciphertext: Buffer.from('doomed-ciphertext-7f3a9c') };
    await store.insertTokens(
      [doomed],
      { entry: entry(), sealer },
      hooks(() => record('x')),
    );
    const reader = new Database(file(), { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM tokens').get();
    const warnings: string[] = [];
    store.onWarning = (message) => warnings.push(message);

    expect(await store.deleteToken('t', 'tok_doomed', { entry: entry(), sealer })).to.equal(true);
    expect(walHolds(doomed.ciphertext), 'the reader keeps the WAL').to.equal(true);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).not.to.contain('tok_doomed');

    reader.exec('COMMIT');
    reader.close();
    // The background retry empties the WAL once nothing reads from it.
    await waitFor(() => !walHolds(doomed.ciphertext), { what: 'the WAL purge retry', everyMs: 100 });
    expect(readFileSync(file()).includes(doomed.ciphertext)).to.equal(false);
  });
});
