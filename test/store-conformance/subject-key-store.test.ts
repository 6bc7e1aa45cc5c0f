import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresSubjectKeyStore } from '../../src/store/postgres-subject-key-store';
import { SqliteSubjectKeyStore } from '../../src/store/sqlite/sqlite-subject-key-store';
import type { SubjectKeyRecord, SubjectKeyStore } from '../../src/store/subject-key-store';
import { createTestDatabase, requirePostgres } from '../helpers/postgres';
import { StoreUnavailableError } from '../../src/store/vault-store';

/** A fresh, empty key store, and `others`: more connections (instances, processes) to the same one. */
interface KeyStoreUnderTest {
  store: SubjectKeyStore;
  others: SubjectKeyStore[];
  /** The store's files (SQLite), to look for a destroyed key's bytes. */
  files?: string[];
  cleanup(): Promise<void>;
}

interface KeyStoreFactory {
  name: string;
  available?(context: Mocha.Context): Promise<void>;
  open(): Promise<KeyStoreUnderTest>;
}

const OTHERS = 3;

const sqlite: KeyStoreFactory = {
  name: 'SqliteSubjectKeyStore',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'pii-vault-subject-keys-'));
    const file = join(dir, 'subject-keys.db');
    const [store, ...others] = Array.from({ length: OTHERS + 1 }, () => new SqliteSubjectKeyStore(file, 5_000));
    return {
      store,
      others,
      files: [file, `${file}-wal`],
      async cleanup() {
        for (const s of [store, ...others]) await s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgres: KeyStoreFactory = {
  name: 'PostgresSubjectKeyStore',
  available: requirePostgres,
  async open() {
    const database = await createTestDatabase();
    const options = { url: database.url, poolSize: 4, connectTimeoutMs: 5_000, statementTimeoutMs: 10_000 };
    // Opened at once: concurrent starts create the table once.
    const [store, ...others] = await Promise.all(Array.from({ length: OTHERS + 1 }, () => PostgresSubjectKeyStore.open(options)));
    return {
      store,
      others,
      async cleanup() {
        for (const s of [store, ...others]) await s.close().catch(() => undefined);
        await database.drop();
      },
    };
  },
};

async function getOne(store: SubjectKeyStore, c: SubjectKeyRecord): Promise<SubjectKeyRecord> {
  const [stored] = await store.getOrCreate([c]);
  return stored;
}

function candidate(tenant = 'default', subjectHash: Buffer = randomBytes(32)): SubjectKeyRecord {
  return { tenant, subjectHash, wrapVersion: 1, wrapped: randomBytes(60), createdAt: 1_700_000_000_000 };
}

for (const factory of [sqlite, postgres]) {
  describe(`subject key store conformance / ${factory.name}`, function () {
    this.timeout(60_000);
    let under: KeyStoreUnderTest;
    before(async function () {
      await factory.available?.(this);
    });
    beforeEach(async () => {
      under = await factory.open();
    });
    afterEach(async () => {
      await under?.cleanup();
    });

    it('getOrCreate stores the first candidate and returns it; later candidates get the stored key', async () => {
      const first = candidate();
      expect(await getOne(under.store, first)).to.deep.equal(first);
      const second = candidate('default', first.subjectHash);
      expect(await getOne(under.store, second)).to.deep.equal(first);
      expect(await under.store.get('default', first.subjectHash)).to.deep.equal(first);
    });

    it('keys are per (tenant, subject HMAC): the same HMAC in another tenant is another key', async () => {
      const a = candidate('tenant-a');
      const b = candidate('tenant-b', a.subjectHash);
      expect(await getOne(under.store, a)).to.deep.equal(a);
      expect(await getOne(under.store, b)).to.deep.equal(b);
      expect(await under.store.get('tenant-a', a.subjectHash)).to.deep.equal(a);
      expect(await under.store.get('tenant-c', a.subjectHash)).to.equal(undefined);
    });

    it('getMany answers each key in order as get would: stored ones, undefined for none or another tenant, repeats, none asked', async () => {
      const [a, b] = [await getOne(under.store, candidate('tenant-a')), await getOne(under.store, candidate('tenant-b'))];
      const absent = { tenant: 'tenant-a', subjectHash: randomBytes(32) };
      const asked = [b, { tenant: 'tenant-c', subjectHash: a.subjectHash }, absent, a, b];
      expect(await under.store.getMany(asked.map(({ tenant, subjectHash }) => ({ tenant, subjectHash })))).to.deep.equal([
        b,
        undefined,
        undefined,
        a,
        b,
      ]);
      expect(await under.store.getMany([])).to.deep.equal([]);
    });

    it('destroy deletes the key (true once, then false); a later getOrCreate makes a new one', async () => {
      const first = await getOne(under.store, candidate());
      expect(await under.store.destroy('default', first.subjectHash)).to.equal(true);
      expect(await under.store.get('default', first.subjectHash)).to.equal(undefined);
      expect(await under.store.destroy('default', first.subjectHash)).to.equal(false);
      const next = candidate('default', first.subjectHash);
      expect(await getOne(under.store, next)).to.deep.equal(next);
    });

    it('concurrent getOrCreate of one subject from several connections yields one key for all', async () => {
      for (let round = 0; round < 5; round++) {
        const subjectHash = randomBytes(32);
        const stores = [under.store, ...under.others];
        const results = await Promise.all(
          stores.flatMap((s) => [getOne(s, candidate('default', subjectHash)), getOne(s, candidate('default', subjectHash))]),
        );
        const stored = await under.store.get('default', subjectHash);
        for (const result of results) expect(result).to.deep.equal(stored);
      }
    });

    it('getOrCreate of a batch answers in order: stored keys kept, new ones stored, a key repeated in the batch stored once', async () => {
      const existing = await getOne(under.store, candidate());
      const fresh = candidate();
      const repeat = candidate('default', fresh.subjectHash);
      const result = await under.store.getOrCreate([fresh, candidate('default', existing.subjectHash), repeat]);
      expect(result).to.deep.equal([fresh, existing, fresh]);
      expect(await under.store.get('default', fresh.subjectHash)).to.deep.equal(fresh);
    });

    it('concurrent overlapping batches from several connections, in different orders, agree on every key (no deadlock)', async () => {
      const stores = [under.store, ...under.others];
      for (let round = 0; round < 10; round++) {
        const hashes = Array.from({ length: 20 }, () => randomBytes(32));
        const results = await Promise.all(
          stores.map((s, i) => s.getOrCreate([...hashes.slice(i * 3), ...hashes.slice(0, i * 3)].map((h) => candidate('default', h)))),
        );
        for (const result of results) {
          for (const stored of result) expect(stored).to.deep.equal(await under.store.get('default', stored.subjectHash));
        }
      }
    });

    it('of concurrent destroys of one key from several connections exactly one returns true', async () => {
      const key = await getOne(under.store, candidate());
      const results = await Promise.all([under.store, ...under.others].map((s) => s.destroy('default', key.subjectHash)));
      expect(results.filter(Boolean)).to.have.length(1);
    });

    // PostgreSQL's WAL and dead tuples are the server's to manage (see README).
    if (factory === sqlite)
      it('destroy leaves no copy of the wrapped key in the store files (database and WAL)', async () => {
        const key = await getOne(under.store, candidate());
        const found = () => under.files!.some((f) => readFileOrEmpty(f).includes(key.wrapped));
        expect(found(), 'the key is in the files before the destroy').to.equal(true);
        await under.store.destroy('default', key.subjectHash);
        expect(found()).to.equal(false);
      });
  });
}

function readFileOrEmpty(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch {
    return Buffer.alloc(0);
  }
}

describe('PostgresSubjectKeyStore: an unreachable database', () => {
  it('is StoreUnavailableError at open, naming the database without its password', async () => {
    const err = await PostgresSubjectKeyStore.open({
      url: 'postgres://vault:s3cret@127.0.0.1:1/keys',
      poolSize: 1,
      connectTimeoutMs: 1_000,
      statementTimeoutMs: 1_000,
    }).catch((e: Error) => e);
    expect(err).to.be.instanceOf(StoreUnavailableError);
    expect((err as Error).message).to.contain('cannot open the subject key store postgres://vault:***@127.0.0.1:1/keys');
    expect((err as Error).message).to.not.contain('s3cret');
  });
});
