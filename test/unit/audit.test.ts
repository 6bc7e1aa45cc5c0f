import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { AuditLog, AuditUnavailableError, auditMac } from '../../src/audit/audit-log';
import { KeyManager } from '../../src/keys/key-manager';
import { SYSTEM_TENANT } from '../../src/domain/tenants';
import { LocalKeyProvider, MasterKeyring } from '../../src/crypto/local-key-provider';
import { generateToken } from '../../src/domain/token-formats';
import { SqliteStore } from '../../src/store/sqlite-store';
import { type AuditEntry, GENESIS_HASH } from '../../src/store/vault-store';
import { withTempStore } from '../helpers/temp-store';

// ---------------------------------------------------------------- helpers

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

function entry(i: number): AuditEntry {
  return {
    ts: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
    requestId: `req-${i}`,
    principal: i % 3 === 0 ? 'gateway' : 'billing',
    tenant: i % 5 === 0 ? null : 'default',
    action: i % 2 === 0 ? 'detokenize' : 'tokenize',
    types: ['pan'],
    tokens: [`tok_${i}`],
    purpose: i % 3 === 0 ? 'charge' : null,
    outcome: i % 7 === 0 ? 'deny' : 'allow',
    reason: i % 7 === 0 ? 'no grant' : null,
    subjects: i % 4 === 0 ? [`subject-hmac-${i}`] : [],
  };
}

interface Harness {
  store: SqliteStore;
  keys: KeyManager;
  audit: AuditLog;
  ring: MasterKeyring;
}

describe('audit / hash-chained log (SqliteStore)', () => {
  const stores = withTempStore();

  async function harness(): Promise<Harness> {
    const store = await stores.open();
    const ring = MasterKeyring.generate();
    const keys = new KeyManager(store, new LocalKeyProvider(ring));
    return { store, keys, audit: new AuditLog(store, keys), ring };
  }

  async function withRows(count: number): Promise<Harness> {
    const h = await harness();
    for (let i = 1; i <= count; i++) await h.audit.append(entry(i));
    return h;
  }

  /** Many rows quickly: concurrent appends share one transaction (group commit). */
  async function withManyRows(count: number): Promise<Harness> {
    const h = await harness();
    await Promise.all(Array.from({ length: count }, (_, i) => h.audit.append(entry(i + 1))));
    return h;
  }

  const sql = (h: Harness, statement: string, ...params: unknown[]) => h.store.db.prepare(statement).run(...params);
  const hashOf = (h: Harness, seq: number) =>
    (h.store.db.prepare('SELECT hash FROM audit WHERE seq = ?').get(seq) as { hash: Buffer }).hash;

  it('50 appended rows verify ok, with rows 50 and the head hash of row 50', async () => {
    const h = await withRows(50);
    const result = await h.audit.verify();
    expect(result).to.deep.equal({
      ok: true,
      rows: 50,
      headSeq: 50,
      headHash: hashOf(h, 50).toString('hex'),
      verifiedFrom: 1,
      checkpoint: 'none',
      archivedThrough: 0,
    });
  });

  it('an empty log verifies ok with zero rows and the genesis head', async () => {
    const h = await harness();
    expect(await h.audit.verify()).to.deep.equal({
      ok: true,
      rows: 0,
      headSeq: 0,
      headHash: GENESIS_HASH.toString('hex'),
      verifiedFrom: 1,
      checkpoint: 'none',
      archivedThrough: 0,
    });
  });

  it('append numbers rows 1, 2, 3… and links each to the previous hash (the first to the 32-zero-byte genesis)', async () => {
    const h = await harness();
    const r1 = await h.audit.append(entry(1));
    const r2 = await h.audit.append(entry(2));
    const r3 = await h.audit.append(entry(3));
    expect([r1.seq, r2.seq, r3.seq]).to.deep.equal([1, 2, 3]);
    expect(r1.prevHash.equals(Buffer.alloc(32))).to.equal(true);
    expect(r2.prevHash.equals(r1.hash)).to.equal(true);
    expect(r3.prevHash.equals(r2.hash)).to.equal(true);
    expect(r1.keyVersion).to.equal(1);
    expect(r1.hash.length).to.equal(32);
    // The hash is the HMAC under the vault's audit key, not a plain digest.
    const { key } = await h.keys.activeKey(SYSTEM_TENANT, 'audit');
    expect(auditMac(key, r2.prevHash, 2, entry(2), 1).equals(r2.hash)).to.equal(true);
    // What the store returns is what append returned.
    const [s1, s2] = await h.store.auditRows(0, 2);
    expect(s1).to.deep.equal(r1);
    expect(s2).to.deep.equal(r2);
  });

  it('verification pages through the log: any page size gives the same result and finds tampering across pages', async () => {
    const h = await withRows(50);
    await h.audit.verify({ full: true });
    const full = await h.audit.verify({ full: true });
    for (const pageSize of [1, 7, 49, 50, 51]) expect(await h.audit.verify({ full: true, pageSize }), String(pageSize)).to.deep.equal(full);
    sql(h, "UPDATE audit SET action = 'delete' WHERE seq = 36");
    for (const pageSize of [1, 7, 35, 36, 1000]) {
      const r = await h.audit.verify({ full: true, pageSize });
      expect(r.ok, String(pageSize)).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(36);
    }
  });

  it('a second AuditLog with a cold key cache (another process) verifies the chain', async () => {
    const h = await withRows(20);
    const cold = new AuditLog(h.store, new KeyManager(h.store, new LocalKeyProvider(h.ring)));
    expect((await cold.verify()).ok).to.equal(true);
    // And it extends the same chain.
    await cold.append(entry(21));
    expect(await h.audit.verify()).to.include({ ok: true, rows: 21 });
  });

  describe('tampering is detected at the first bad row', () => {
    it('an edited principal of row 20 → ok:false, firstBadSeq 20', async () => {
      const h = await withRows(50);
      sql(h, "UPDATE audit SET principal = 'mallory' WHERE seq = 20");
      const r = await h.audit.verify();
      expect(r).to.deep.equal({
        ok: false,
        rows: 19,
        firstBadSeq: 20,
        reason: 'content does not match its HMAC (edited)',
        verifiedFrom: 1,
        checkpoint: 'none',
        archivedThrough: 0,
      });
    });

    it('an edit of any single column of row 20 → firstBadSeq 20; restoring it verifies ok again', async () => {
      const h = await withRows(50);
      const edits: Record<string, unknown> = {
        ts: '2030-01-01T00:00:00.000Z',
        request_id: 'req-forged',
        principal: 'mallory',
        tenant: 'other',
        action: 'tokenize',
        types: '["ssn"]',
        tokens: '["tok_other"]',
        purpose: 'refund',
        outcome: 'deny',
        reason: 'forged',
        subjects: '["x"]',
        hash: Buffer.alloc(32, 1),
        prev_hash: Buffer.alloc(32, 2),
      };
      const original = h.store.db.prepare('SELECT * FROM audit WHERE seq = 20').get() as Record<string, unknown>;
      for (const [column, value] of Object.entries(edits)) {
        sql(h, `UPDATE audit SET ${column} = ? WHERE seq = 20`, value);
        const r = await h.audit.verify({ full: true });
        expect(r.ok, column).to.equal(false);
        expect(!r.ok && r.firstBadSeq, column).to.equal(20);
        sql(h, `UPDATE audit SET ${column} = ? WHERE seq = 20`, original[column]);
        expect((await h.audit.verify({ full: true })).ok, `${column} restored`).to.equal(true);
      }
    });

    it('a deleted row 10 → firstBadSeq 10, reported missing', async () => {
      const h = await withRows(50);
      sql(h, 'DELETE FROM audit WHERE seq = 10');
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(10);
      expect(!r.ok && r.reason).to.match(/missing/);
      expect(r.rows).to.equal(9);
    });

    it('a deleted row 1 → firstBadSeq 1', async () => {
      const h = await withRows(50);
      sql(h, 'DELETE FROM audit WHERE seq = 1');
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(1);
      expect(!r.ok && r.reason).to.match(/missing/);
    });

    it('the hashes of two rows swapped → firstBadSeq is the earlier row', async () => {
      const h = await withRows(50);
      const h5 = hashOf(h, 5);
      const h30 = hashOf(h, 30);
      sql(h, 'UPDATE audit SET hash = ? WHERE seq = 5', h30);
      sql(h, 'UPDATE audit SET hash = ? WHERE seq = 30', h5);
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(5);
    });

    it('two adjacent rows swapped (seq renumbered) → firstBadSeq is the earlier position', async () => {
      const h = await withRows(50);
      sql(h, 'UPDATE audit SET seq = -1 WHERE seq = 12');
      sql(h, 'UPDATE audit SET seq = 12 WHERE seq = 13');
      sql(h, 'UPDATE audit SET seq = 13 WHERE seq = -1');
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(12);
    });

    it('a changed key_version → ok:false at that row (unknown audit key version)', async () => {
      const h = await withRows(50);
      sql(h, 'UPDATE audit SET key_version = 2 WHERE seq = 20');
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(20);
      expect(!r.ok && r.reason).to.match(/key version 2/);
    });

    it('a row whose chain was recomputed under another key → firstBadSeq at that row', async () => {
      const h = await withRows(50);
      const forged = auditMac(Buffer.alloc(32, 9), hashOf(h, 19), 20, { ...entry(20), principal: 'mallory' }, 1);
      sql(h, "UPDATE audit SET principal = 'mallory', hash = ? WHERE seq = 20", forged);
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(20);
    });

    it('a forged row appended after the head → firstBadSeq 51', async () => {
      const h = await withRows(50);
      sql(
        h,
        `INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
         VALUES (51, 'x', 'r', 'mallory', 'default', 'detokenize', '[]', '[]', NULL, 'allow', NULL, '[]', 1, ?, ?)`,
        hashOf(h, 50),
        Buffer.alloc(32, 7),
      );
      const r = await h.audit.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(51);
      expect(r.rows).to.equal(50);
    });

    it('a destroyed audit key (wrapped = NULL) makes every row unverifiable from row 1', async () => {
      const h = await withRows(5);
      sql(h, "UPDATE data_keys SET wrapped = NULL, state = 'destroyed' WHERE tenant = ? AND purpose = 'audit'", SYSTEM_TENANT);
      const cold = new AuditLog(h.store, new KeyManager(h.store, new LocalKeyProvider(h.ring)));
      const r = await cold.verify();
      expect(r.ok).to.equal(false);
      expect(!r.ok && r.firstBadSeq).to.equal(1);
    });
  });

  describe('incremental verification from a MAC-protected checkpoint', () => {
    const checkpointRow = (h: Harness) =>
      h.store.db.prepare('SELECT seq, hash FROM audit_checkpoint').get() as { seq: number; hash: Buffer } | undefined;

    it('a verification leaves a checkpoint; the next one checks only the rows after it', async () => {
      const h = await withRows(50);
      expect(await h.audit.verify()).to.include({ ok: true, rows: 50, verifiedFrom: 1, checkpoint: 'none' });
      expect(checkpointRow(h)).to.deep.equal({ seq: 50, hash: hashOf(h, 50) });
      for (let i = 51; i <= 60; i++) await h.audit.append(entry(i));
      const next = await h.audit.verify();
      expect(next).to.deep.include({ ok: true, rows: 60, headSeq: 60, verifiedFrom: 51, checkpoint: 'used' });
      expect(checkpointRow(h)!.seq).to.equal(60);
    });

    it('an edit after the checkpoint is found by the incremental verification', async () => {
      const h = await withRows(30);
      await h.audit.verify();
      for (let i = 31; i <= 40; i++) await h.audit.append(entry(i));
      sql(h, "UPDATE audit SET reason = 'forged' WHERE seq = 35");
      expect(await h.audit.verify()).to.include({ ok: false, firstBadSeq: 35, verifiedFrom: 31, checkpoint: 'used' });
    });

    it('a forged checkpoint (moved past an edited row) is rejected, recorded, and the whole chain verified', async () => {
      const h = await withRows(50);
      await h.audit.verify();
      for (let i = 51; i <= 60; i++) await h.audit.append(entry(i));
      sql(h, "UPDATE audit SET principal = 'mallory' WHERE seq = 55");
      // The writer moves the checkpoint over its edit; it cannot compute the MAC under the audit key.
      sql(h, 'UPDATE audit_checkpoint SET seq = 60, hash = ?', hashOf(h, 60));
      const r = await h.audit.verify();
      expect(r).to.include({ ok: false, firstBadSeq: 55, verifiedFrom: 1, checkpoint: 'rejected' });
      const [recorded] = await h.store.auditRows(60, 10);
      expect(recorded).to.include({ action: 'audit:checkpoint-rejected', outcome: 'deny', principal: 'system' });
    });

    it('a forged checkpoint over an intact chain: ok, reported as rejected, then replaced by a valid one', async () => {
      const h = await withRows(20);
      await h.audit.verify();
      sql(h, 'UPDATE audit_checkpoint SET mac = ?', Buffer.alloc(32, 3));
      expect(await h.audit.verify()).to.include({ ok: true, verifiedFrom: 1, checkpoint: 'rejected' });
      expect(await h.audit.verify()).to.include({ ok: true, checkpoint: 'used' });
    });

    it('rows up to the checkpoint that disappear (a truncated log) are reported', async () => {
      const h = await withRows(50);
      await h.audit.verify();
      sql(h, 'DELETE FROM audit WHERE seq >= 45');
      for (const full of [false, true]) {
        const r = await h.audit.verify({ full });
        expect(r, `full: ${full}`).to.include({ ok: false, firstBadSeq: 45 });
        expect(!r.ok && r.reason).to.match(/truncated/);
      }
    });

    it('an edited checkpoint row makes the run start from the first row and name it', async () => {
      const h = await withRows(30);
      await h.audit.verify();
      sql(h, "UPDATE audit SET action = 'tokenize', hash = ? WHERE seq = 30", Buffer.alloc(32, 5));
      expect(await h.audit.verify()).to.include({ ok: false, firstBadSeq: 30, verifiedFrom: 1 });
    });

    it('concurrent verifications share one run (single-flight): the rows are read once', async () => {
      let reads = 0;
      const counted = (h: Harness) => {
        const read = h.store.auditRows.bind(h.store);
        h.store.auditRows = (...args) => {
          reads++;
          return read(...args);
        };
      };
      const alone = await withManyRows(300);
      counted(alone);
      await alone.audit.verify();
      const readsOfOneRun = reads;
      expect(readsOfOneRun).to.be.greaterThan(0);

      const h = await withManyRows(300);
      counted(h);
      reads = 0;
      const [a, b, c] = await Promise.all([h.audit.verify(), h.audit.verify(), h.audit.verify()]);
      expect(reads).to.equal(readsOfOneRun);
      expect(b).to.deep.equal(a);
      expect(c).to.deep.equal(a);
    });
  });

  describe('compact rows', () => {
    const randomToken = () => generateToken('random', 'none', '');

    it('long token and subject lists are stored deflated (about half), read back unchanged, and verify', async () => {
      const h = await harness();
      const big: AuditEntry = {
        ...entry(1),
        tokens: Array.from({ length: 1000 }, randomToken),
        subjects: Array.from({ length: 1000 }, () => randomBytes(32).toString('hex')),
      };
      const appended = await h.audit.append(big);
      const stored = h.store.db.prepare('SELECT types, tokens, subjects FROM audit WHERE seq = 1').get() as Record<string, unknown>;
      for (const list of ['tokens', 'subjects'] as const) {
        expect(Buffer.isBuffer(stored[list]), list).to.equal(true);
        expect((stored[list] as Buffer).length, list).to.be.below(0.6 * JSON.stringify(big[list]).length);
      }
      expect(stored.types).to.equal('["pan"]'); // short lists stay JSON text
      const [read] = await h.store.auditRows(0, 1);
      expect(read).to.deep.equal(appended);
      expect(read.tokens).to.deep.equal(big.tokens);
      expect(read.subjects).to.deep.equal(big.subjects);
      // The MAC covers the lists themselves, not how they are stored.
      const { key } = await h.keys.activeKey(SYSTEM_TENANT, 'audit');
      expect(auditMac(key, GENESIS_HASH, 1, big, 1).equals(read.hash)).to.equal(true);
      expect(await h.audit.verify()).to.include({ ok: true, rows: 1 });
    });

    it('rows stored as JSON text (before the compact encoding) still read and verify', async () => {
      const h = await withRows(3);
      const row = h.store.db.prepare('SELECT tokens FROM audit WHERE seq = 2').get() as { tokens: unknown };
      expect(row.tokens).to.equal('["tok_2"]');
      expect((await h.store.auditRows(1, 1))[0].tokens).to.deep.equal(['tok_2']);
      expect(await h.audit.verify({ full: true })).to.include({ ok: true, rows: 3 });
    });
  });

  describe('archive: export verified segments, then prune them', () => {
    const file = (name: string) => join(stores.dir, `${name}.jsonl`);
    const lines = (path: string) => readFileSync(path, 'utf8').trimEnd().split('\n');
    const rewrite = (path: string, edit: (lines: string[]) => string[]) => writeFileSync(path, edit(lines(path)).join('\n') + '\n');
    const count = (h: Harness) => (h.store.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;

    it('archives rows before SEQ to a JSON-lines file with the anchoring head, prunes them, and both verify', async () => {
      const h = await withRows(50);
      const head30 = hashOf(h, 30).toString('hex');
      const hash1 = hashOf(h, 1).toString('hex');
      const out = file('a');
      const summary = await h.audit.archive(31, out);
      expect(summary).to.deep.equal({ fromSeq: 1, throughSeq: 30, rows: 30, headHash: head30 });
      expect(statSync(out).mode & 0o777).to.equal(0o600);

      const text = lines(out);
      expect(text).to.have.length(32);
      expect(JSON.parse(text[0])).to.deep.equal({
        format: 'pii-vault-audit-archive',
        version: 1,
        fromSeq: 1,
        prevHash: GENESIS_HASH.toString('hex'),
      });
      expect(JSON.parse(text[1])).to.include({ seq: 1, requestId: 'req-1', principal: 'billing', hash: hash1 });
      expect(JSON.parse(text[31])).to.deep.equal({ end: true, throughSeq: 30, rows: 30, headHash: head30 });

      // Rows 1–30 are gone; 31–50 remain, followed by the audit row of the archive itself.
      expect(count(h)).to.equal(21);
      const [archived] = await h.store.auditRows(50, 1);
      expect(archived).to.include({ seq: 51, action: 'audit:archive', principal: 'cli' });
      expect(archived.reason).to.contain(head30);

      for (const full of [false, true]) {
        expect(await h.audit.verify({ full }), `full: ${full}`).to.include({ ok: true, rows: 21, headSeq: 51, archivedThrough: 30 });
      }
      expect(await h.audit.verifyArchive(out)).to.deep.equal({ ok: true, fromSeq: 1, throughSeq: 30, rows: 30, headHash: head30 });

      // A second archive continues where the first ended; both files still verify against the vault.
      const second = file('b');
      expect(await h.audit.archive(41, second)).to.include({ fromSeq: 31, throughSeq: 40, rows: 10 });
      expect(await h.audit.verifyArchive(out)).to.include({ ok: true });
      expect(await h.audit.verifyArchive(second)).to.include({ ok: true, fromSeq: 31 });
      expect(await h.audit.verify({ full: true })).to.include({ ok: true, headSeq: 52, archivedThrough: 40 });
    });

    it('archiving every row: the next row chains from the anchor', async () => {
      const h = await withRows(10);
      await h.audit.archive(11, file('all'));
      expect(count(h)).to.equal(1);
      await h.audit.append(entry(12));
      expect(await h.audit.verify({ full: true })).to.include({ ok: true, rows: 2, headSeq: 12, archivedThrough: 10 });
    });

    it('a row stored under a number an archived segment covers (archived rows put back, or planted) fails verification', async () => {
      const h = await withRows(20);
      await h.audit.archive(11, file('planted'));
      expect(await h.audit.verify({ full: true })).to.include({ ok: true, archivedThrough: 10 });
      sql(
        h,
        'INSERT INTO audit SELECT 5 AS seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash FROM audit WHERE seq = 11',
      );
      for (const full of [false, true]) {
        expect(await h.audit.verify({ full }), `full: ${full}`).to.include({ ok: false, firstBadSeq: 5 });
      }
    });

    it('a tampered archive file is detected: an edited, removed or reordered row, a changed head, a missing trailer', async () => {
      const h = await withRows(20);
      const out = file('t');
      await h.audit.archive(16, out);
      const original = lines(out);
      const cases: Record<string, (l: string[]) => string[]> = {
        'edited row 5': (l) => l.map((x, i) => (i === 5 ? x.replace('"principal":"billing"', '"principal":"mallory"') : x)),
        'removed row 7': (l) => l.filter((_, i) => i !== 7),
        'rows 3 and 4 swapped': (l) => [...l.slice(0, 3), l[4], l[3], ...l.slice(5)],
        'changed head in the trailer': (l) => [...l.slice(0, -1), l[l.length - 1].replace(/"headHash":"[0-9a-f]{2}/, '"headHash":"zz')],
        'no trailer (truncated)': (l) => l.slice(0, -1),
        'trailer and last row removed': (l) => l.slice(0, -2),
        'header chained from elsewhere': (l) => [l[0].replace(/"prevHash":"0/, '"prevHash":"1'), ...l.slice(1)],
      };
      for (const [what, edit] of Object.entries(cases)) {
        writeFileSync(out, original.join('\n') + '\n');
        rewrite(out, edit);
        const check = await h.audit.verifyArchive(out);
        expect(check.ok, what).to.equal(false);
      }
      writeFileSync(out, original.join('\n') + '\n');
      expect((await h.audit.verifyArchive(out)).ok).to.equal(true);
      // Rows that verify, but not as the segment this vault archived (the last rows cut off, trailer rewritten).
      const cut = original.slice(0, 11);
      const last = JSON.parse(cut[10]);
      writeFileSync(out, [...cut, JSON.stringify({ end: true, throughSeq: 10, rows: 10, headHash: last.hash })].join('\n') + '\n');
      expect(await h.audit.verifyArchive(out)).to.deep.include({
        ok: false,
        reason: 'this segment is not recorded as archived by this vault',
      });
    });

    it('tampering with the rows that remain is still detected', async () => {
      const h = await withRows(40);
      await h.audit.archive(21, file('r'));
      sql(h, "UPDATE audit SET outcome = 'deny' WHERE seq = 30");
      expect(await h.audit.verify({ full: true })).to.include({ ok: false, firstBadSeq: 30 });
      sql(h, 'DELETE FROM audit WHERE seq = 21');
      expect(await h.audit.verify({ full: true })).to.include({ ok: false, firstBadSeq: 21 });
    });

    it('a forged anchor is detected: moved over deleted rows, or removed', async () => {
      const h = await withRows(40);
      await h.audit.archive(21, file('f'));
      const hash25 = hashOf(h, 25);
      // The writer deletes rows 21–25 and moves the anchor over them; it cannot compute the MAC.
      sql(h, 'DELETE FROM audit WHERE seq BETWEEN 21 AND 25');
      sql(h, 'UPDATE audit_segments SET through_seq = 25, head_hash = ?', hash25);
      const forged = await h.audit.verify({ full: true });
      expect(forged).to.include({ ok: false, firstBadSeq: 1 });
      expect(!forged.ok && forged.reason).to.match(/does not verify \(forged\)/);
      expect(await h.audit.verify()).to.include({ ok: false });
      // Without any anchor, the chain would have to start at row 1.
      sql(h, 'DELETE FROM audit_segments');
      expect(await h.audit.verify({ full: true })).to.include({ ok: false, firstBadSeq: 1 });
    });

    it('never prunes rows that do not verify, never overwrites a file, and refuses a SEQ past the head', async () => {
      const h = await withRows(30);
      sql(h, "UPDATE audit SET principal = 'mallory' WHERE seq = 12");
      const out = file('bad');
      const err = await rejection(h.audit.archive(21, out));
      expect((err as Error).message).to.match(/row 12.*nothing archived/);
      expect(count(h)).to.equal(30);
      expect(existsSync(out)).to.equal(false);
      expect(readdirSync(stores.dir).filter((f) => f.includes('.tmp'))).to.deep.equal([]);

      const good = await withRows(10);
      const taken = file('taken');
      writeFileSync(taken, 'keep me');
      expect(((await rejection(good.audit.archive(5, taken))) as Error).message).to.match(/already exists/);
      expect(readFileSync(taken, 'utf8')).to.equal('keep me');
      expect(((await rejection(good.audit.archive(12, file('past')))) as Error).message).to.match(/at most 11/);
      expect(count(good)).to.equal(10);
    });
  });

  describe('fail closed', () => {
    it('append rejects with AuditUnavailableError when the store refuses the insert, and writes nothing', async () => {
      const h = await withRows(3);
      h.store.db.exec("CREATE TRIGGER audit_refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'x'); END");
      const err = await rejection(h.audit.append(entry(4)));
      expect(err).to.be.instanceOf(AuditUnavailableError);
      expect((err as AuditUnavailableError).cause).to.be.instanceOf(Error);
      expect((err as Error).message).to.equal('audit log cannot be written');
      expect(await h.audit.verify()).to.include({ ok: true, rows: 3 });
      h.store.db.exec('DROP TRIGGER audit_refuse');
      expect((await h.audit.append(entry(4))).seq).to.equal(4);
    });

    it('append rejects with AuditUnavailableError when the database is closed', async () => {
      const h = await harness();
      await h.audit.append(entry(1));
      await h.store.close();
      expect(await rejection(h.audit.append(entry(2)))).to.be.instanceOf(AuditUnavailableError);
    });

    it('append rejects with AuditUnavailableError when the audit key cannot be unwrapped', async () => {
      const h = await withRows(1);
      const wrong = new AuditLog(h.store, new KeyManager(h.store, new LocalKeyProvider(MasterKeyring.generate())));
      expect(await rejection(wrong.append(entry(2)))).to.be.instanceOf(AuditUnavailableError);
      expect(await h.audit.verify()).to.include({ ok: true, rows: 1 });
    });
  });
});

describe('audit / auditMac', () => {
  const key = Buffer.alloc(32, 0x07);
  const prev = Buffer.alloc(32);
  const base: AuditEntry = {
    ts: '2024-01-02T03:04:05.000Z',
    requestId: 'req-1',
    principal: 'gateway',
    tenant: 'default',
    action: 'detokenize',
    types: ['pan'],
    tokens: ['tok_a', 'tok_b'],
    purpose: 'charge',
    outcome: 'allow',
    reason: null,
    subjects: ['ab12'],
  };

  it('golden vector: the MAC of a fixed row is the checked-in value (a change breaks every existing chain)', () => {
    expect(auditMac(key, prev, 1, base, 1).toString('hex')).to.equal('a50d6aaa9a70a89f72f044afce362d8d726dde9ad108d926d98ef556532f569b');
  });

  it('is a deterministic 256-bit value', () => {
    const a = auditMac(key, prev, 1, base, 1);
    expect(a.length).to.equal(32);
    expect(auditMac(key, Buffer.from(prev), 1, { ...base }, 1).equals(a)).to.equal(true);
  });

  it('changes when any field, the sequence number, the key version, the previous hash or the key changes', () => {
    const baseMac = auditMac(key, prev, 1, base, 1).toString('hex');
    const variants: Record<string, string> = {
      ts: auditMac(key, prev, 1, { ...base, ts: '2024-01-02T03:04:06.000Z' }, 1).toString('hex'),
      requestId: auditMac(key, prev, 1, { ...base, requestId: 'req-2' }, 1).toString('hex'),
      principal: auditMac(key, prev, 1, { ...base, principal: 'support' }, 1).toString('hex'),
      tenant: auditMac(key, prev, 1, { ...base, tenant: 'other' }, 1).toString('hex'),
      'tenant null': auditMac(key, prev, 1, { ...base, tenant: null }, 1).toString('hex'),
      action: auditMac(key, prev, 1, { ...base, action: 'tokenize' }, 1).toString('hex'),
      types: auditMac(key, prev, 1, { ...base, types: ['ssn'] }, 1).toString('hex'),
      'types order': auditMac(key, prev, 1, { ...base, types: ['pan', 'pan'] }, 1).toString('hex'),
      tokens: auditMac(key, prev, 1, { ...base, tokens: ['tok_b', 'tok_a'] }, 1).toString('hex'),
      'tokens split': auditMac(key, prev, 1, { ...base, tokens: ['tok_atok_b'] }, 1).toString('hex'),
      purpose: auditMac(key, prev, 1, { ...base, purpose: 'refund' }, 1).toString('hex'),
      'purpose null': auditMac(key, prev, 1, { ...base, purpose: null }, 1).toString('hex'),
      outcome: auditMac(key, prev, 1, { ...base, outcome: 'deny' }, 1).toString('hex'),
      reason: auditMac(key, prev, 1, { ...base, reason: 'no grant' }, 1).toString('hex'),
      subjects: auditMac(key, prev, 1, { ...base, subjects: [] }, 1).toString('hex'),
      seq: auditMac(key, prev, 2, base, 1).toString('hex'),
      keyVersion: auditMac(key, prev, 1, base, 2).toString('hex'),
      prevHash: auditMac(key, Buffer.alloc(32, 1), 1, base, 1).toString('hex'),
      key: auditMac(Buffer.alloc(32, 0x08), prev, 1, base, 1).toString('hex'),
    };
    for (const [field, mac] of Object.entries(variants)) expect(mac, field).not.to.equal(baseMac);
    expect(new Set(Object.values(variants)).size).to.equal(Object.keys(variants).length);
  });

  it('does not let characters shift between adjacent fields', () => {
    const a = auditMac(key, prev, 1, { ...base, principal: 'gate', tenant: 'waydefault' }, 1);
    const b = auditMac(key, prev, 1, { ...base, principal: 'gateway', tenant: 'default' }, 1);
    expect(a.equals(b)).to.equal(false);
    // seq 11 / keyVersion 1 vs seq 1 / keyVersion 11
    expect(auditMac(key, prev, 11, base, 1).equals(auditMac(key, prev, 1, base, 11))).to.equal(false);
  });
});
