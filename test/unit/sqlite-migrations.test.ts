import { expect } from 'chai';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite-migrations';
import { SqliteStore } from '../../src/store/sqlite-store';

describe('store / SQLite migration 5 (per-tenant token spaces, record binding)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pii-vault-migrate-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps every earlier record, marks it binding 1 with preserve unknown, and lets tenants share a token string', async () => {
    const file = join(dir, 'v.db');
    const old = new Database(file);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 2)) {
      old.exec(m.sql);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(m.version, 'then');
    }
    old
      .prepare(
        `INSERT INTO tokens (token, tenant, type, format, key_version, nonce, ciphertext, tag, fingerprint, metadata, created_at, expires_at)
         VALUES ('1234', 'a', 'pan', 'pan', 1, x'00', x'01', x'02', x'03', '{"k":1}', 5, 9)`,
      )
      .run();
    old.close();

    const store = new SqliteStore(file);
    try {
      const [record] = (await store.findTokens(['1234'])).get('1234')!;
      expect(record).to.include({ tenant: 'a', format: 'pan', preserve: null, binding: 1, createdAt: 5, expiresAt: 9 });
      expect(record.fingerprint).to.deep.equal(Buffer.from([3]));
      expect(record.metadata).to.deep.equal({ k: 1 });
      store.db
        .prepare(
          `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, created_at)
           VALUES ('1234', 'b', 'pan', 'pan', 'last4', 2, 1, x'00', x'01', x'02', 5)`,
        )
        .run();
      expect((await store.findTokens(['1234'])).get('1234')!.map((r) => r.tenant)).to.have.members(['a', 'b']);
      const indexes = (
        store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens'").all() as {
          name: string;
        }[]
      ).map((r) => r.name);
      expect(indexes).to.include.members(['tokens_fingerprint', 'tokens_subject', 'tokens_key_version']);
    } finally {
      await store.close();
    }
  });
});

describe('store / SQLite migration 10 (subject handles, audit index by handle)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pii-vault-migrate-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('gives every existing subject a handle; old audit rows keep their HMACs and are indexed under the handle', async () => {
    const file = join(dir, 'v.db');
    const old = new Database(file);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version < 10)) {
      old.exec(m.sql);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(m.version, 'then');
    }
    const subject = Buffer.alloc(32, 7);
    const insert = old.prepare(
      `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, subject_hash, created_at)
       VALUES (?, 't', 'text', 'random', 'none', 2, 1, x'00', x'01', x'02', ?, ?)`,
    );
    insert.run('tok_a', subject, 5);
    insert.run('tok_b', subject, 3);
    insert.run('tok_c', null, 4);
    const audit = old.prepare(
      `INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
       VALUES (?, 'then', 'r', 'p', 't', 'tokenize', '[]', '[]', NULL, 'allow', NULL, ?, 1, x'00', x'00')`,
    );
    audit.run(1, JSON.stringify([subject.toString('hex')]));
    audit.run(2, '[]');
    audit.run(3, JSON.stringify([Buffer.alloc(32, 9).toString('hex'), subject.toString('hex')]));
    old.close();

    const store = new SqliteStore(file);
    try {
      const row = (await store.subject('t', subject))!;
      expect(row.handle).to.have.length(16);
      expect(row.purposes).to.equal(null);
      expect(store.db.prepare('SELECT count(*) FROM subjects').pluck().get()).to.equal(1);
      expect((await store.findTokens(['tok_b'])).get('tok_b')![0].subjectRow).to.deep.equal(row);
      expect((await store.findTokens(['tok_c'])).get('tok_c')![0].subjectRow).to.equal(null);
      const indexed = await store.auditRowsOfSubject(row.handle, 0, 10);
      expect(indexed.map((r) => r.seq)).to.deep.equal([1, 3]);
      expect(indexed[0].subjects, 'the rows themselves are unchanged').to.deep.equal([subject.toString('hex')]);
    } finally {
      await store.close();
    }
  });
});
