import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { seal } from '../../src/crypto/aead';
import { valueAad } from '../../src/service/record-crypto';
import { createTestVault, TestVault } from '../helpers/test-vault';

/** Issue 10 item 4: every security-relevant column is bound to the value; item 6: deterministic identity and attributes. */
describe('record binding: columns a database writer might edit', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  const db = () => v.opened.store.db;
  const tokenize = (items: object[]) => v.http.post('/v1/tokenize').set(v.as('billing')).send({ items });
  const charge = (tokens: string[]) => v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' });
  const later = (ms: number) => {
    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + ms;
  };
  const lastAudit = async () => (await v.opened.store.auditRows(0, 10_000)).at(-1)!;

  describe('detokenize answers integrity_failed, never the value', () => {
    const edits: Array<[string, string]> = [
      ['expires_at cleared', 'UPDATE tokens SET expires_at = NULL WHERE token = ?'],
      ['expires_at moved later', 'UPDATE tokens SET expires_at = expires_at + 86400000 WHERE token = ?'],
      ['created_at changed', 'UPDATE tokens SET created_at = created_at - 1000 WHERE token = ?'],
      ['format relabelled', "UPDATE tokens SET format = 'random' WHERE token = ?"],
      ['fingerprint set', 'UPDATE tokens SET fingerprint = randomblob(32) WHERE token = ?'],
      ['subject_hash replaced', 'UPDATE tokens SET subject_hash = randomblob(32) WHERE token = ?'],
      ['subject_hash cleared', 'UPDATE tokens SET subject_hash = NULL WHERE token = ?'],
      ['metadata edited', `UPDATE tokens SET metadata = '{"source":"forged"}' WHERE token = ?`],
    ];
    for (const [what, sql] of edits) {
      it(`when ${what}`, async () => {
        const [token] = await v.tokenize([
          { type: 'pan', value: '4111111111111111', ttlSeconds: 60, subject: 'cust_1', metadata: { source: 'signup' } },
        ]);
        expect((await charge([token])).body.items[0].value).to.equal('4111111111111111');
        if (what === 'expires_at cleared') later(61_000);
        db().prepare(sql).run(token);
        const res = await charge([token]);
        expect(res.body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
      });
    }

    it('when a current record is marked as using the older binding (downgrade)', async () => {
      const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
      db().prepare('UPDATE tokens SET binding = 1 WHERE token = ?').run(token);
      expect((await charge([token])).body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
    });

    it('when preserve is relabelled', async () => {
      const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
      db().prepare("UPDATE tokens SET preserve = 'none' WHERE token = ?").run(token);
      expect((await charge([token])).body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
    });

    it('and token metadata reads refuse the edited record too', async () => {
      const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111', ttlSeconds: 60 }]);
      db().prepare('UPDATE tokens SET expires_at = NULL WHERE token = ?').run(token);
      const res = await v.http.get(`/v1/tokens/${token}`).set(v.as('security'));
      expect(res.status).to.equal(500);
      expect(res.body.error.code).to.equal('integrity_failed');
    });
  });

  describe('deterministic tokenize never hands back a record it cannot vouch for', () => {
    it('refuses (audited) when another value’s row was given this value’s fingerprint', async () => {
      const [mine, other] = await v.tokenize([
        { type: 'pan', value: '4111111111111111', deterministic: true },
        { type: 'pan', value: '5555555555554444', deterministic: true },
      ]);
      const fp = (db().prepare('SELECT fingerprint FROM tokens WHERE token = ?').get(mine) as { fingerprint: Buffer }).fingerprint;
      db().prepare('UPDATE tokens SET fingerprint = NULL WHERE token = ?').run(mine);
      db().prepare('UPDATE tokens SET fingerprint = ? WHERE token = ?').run(fp, other);
      const res = await tokenize([{ type: 'pan', value: '4111111111111111', deterministic: true }]);
      expect(JSON.stringify(res.body)).not.to.contain(other);
      expect(res.status).to.equal(500);
      expect(res.body.error.code).to.equal('integrity_failed');
      expect(await lastAudit()).to.include({ action: 'tokenize', outcome: 'deny' });
      expect((await lastAudit()).reason).to.match(/^integrity_failed/);
      expect((await charge([other])).body.items[0]).to.deep.equal({ token: other, error: { code: 'integrity_failed' } });
    });

    it('refuses an expired record whose expiry was cleared instead of bringing it back', async () => {
      const item = { type: 'pan', value: '4111111111111111', deterministic: true, ttlSeconds: 60 };
      const [token] = await v.tokenize([item]);
      later(61_000);
      db().prepare('UPDATE tokens SET expires_at = NULL WHERE token = ?').run(token);
      const res = await tokenize([item]);
      expect(JSON.stringify(res.body)).not.to.contain(token);
      expect(res.body.error.code).to.equal('integrity_failed');
    });
  });

  describe('records written before binding 2', () => {
    // A vault upgraded from before binding 2 accepts such records until none remain.
    beforeEach(async () => {
      await v.close();
      v = await createTestVault({}, { settings: { legacyRecordBinding: 'accept' } });
    });

    /** Turns a record into what migration 5 leaves of an older one: sealed with the v1 AAD, binding 1, preserve unknown. */
    async function makeLegacy(token: string, value: string): Promise<void> {
      const row = db().prepare('SELECT tenant, type, key_version FROM tokens WHERE token = ?').get(token) as {
        tenant: string;
        type: 'pan';
        key_version: number;
      };
      const key = (await v.opened.keys.keyVersion(row.tenant, 'data', row.key_version))!;
      const sealed = seal(key, Buffer.from(value), valueAad(row.tenant, row.type, token, row.key_version));
      db()
        .prepare('UPDATE tokens SET nonce = ?, ciphertext = ?, tag = ?, binding = 1, preserve = NULL WHERE token = ?')
        .run(sealed.nonce, sealed.ciphertext, sealed.tag, token);
    }

    it('still open, are still found deterministically, and the re-encryption job moves them to binding 2', async () => {
      const item = { type: 'pan', value: '4111111111111111', deterministic: true };
      const [token] = await v.tokenize([item]);
      await makeLegacy(token, '4111111111111111');
      expect((await charge([token])).body.items[0].value).to.equal('4111111111111111');
      expect(await v.tokenize([item])).to.deep.equal([token]);
      // A legacy row is handed only to requests whose format and preserve its token shows.
      const none = await v.tokenize([{ ...item, preserve: 'none' }]);
      expect(none[0]).not.to.equal(token);

      const job = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
      expect(job.status).to.equal(202);
      await v.opened.vault.jobs.settled(job.body.job.id);
      const row = db().prepare('SELECT binding, preserve FROM tokens WHERE token = ?').get(token);
      expect(row).to.deep.equal({ binding: 2, preserve: 'last4' });
      expect((await charge([token])).body.items[0].value).to.equal('4111111111111111');
      expect(await v.tokenize([item])).to.deep.equal([token]);

      // Upgraded, it cannot be passed off as binding 1 again.
      db().prepare('UPDATE tokens SET binding = 1 WHERE token = ?').run(token);
      expect((await charge([token])).body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
    });

    it('once a job leaves none, binding 1 is refused for good: an old ciphertext put back with edited columns does not open', async () => {
      const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111', ttlSeconds: 60 }]);
      await makeLegacy(token, '4111111111111111');
      const old = db().prepare('SELECT nonce, ciphertext, tag FROM tokens WHERE token = ?').get(token) as Record<string, Buffer>;
      const job = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
      await v.opened.vault.jobs.settled(job.body.job.id);

      expect(JSON.parse(readFileSync(join(v.dir, 'config.json'), 'utf8')).legacyRecordBinding).to.equal('refuse');
      expect((await lastAudit()).reason).to.equal('no record of binding 1 remains: such records are refused from now on');
      later(61_000);
      expect((await charge([token])).body.items[0].error.code).to.equal('expired');
      // The pre-upgrade bytes (from a backup or old WAL frames), relabelled binding 1 with the expiry cleared.
      db()
        .prepare('UPDATE tokens SET nonce = ?, ciphertext = ?, tag = ?, binding = 1, preserve = NULL, expires_at = NULL WHERE token = ?')
        .run(old.nonce, old.ciphertext, old.tag, token);
      expect((await charge([token])).body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
    });

    it('a job that leaves a binding-1 record behind (it cannot be opened) keeps accepting them', async () => {
      const [bad, good] = await v.tokenize([
        { type: 'pan', value: '4111111111111111' },
        { type: 'pan', value: '5555555555554444' },
      ]);
      await makeLegacy(good, '5555555555554444');
      await makeLegacy(bad, '4111111111111111');
      db().prepare("UPDATE tokens SET ciphertext = x'00' || substr(ciphertext, 2) WHERE token = ?").run(bad);
      const job = await v.http.post('/v1/keys/reencrypt').set(v.as('security')).send({});
      await v.opened.vault.jobs.settled(job.body.job.id);
      expect(JSON.parse(readFileSync(join(v.dir, 'config.json'), 'utf8')).legacyRecordBinding).to.equal('accept');
    });
  });

  it('a vault made by init refuses binding-1 records (it never had any)', async () => {
    expect(JSON.parse(readFileSync(join(v.dir, 'config.json'), 'utf8')).legacyRecordBinding).to.equal('refuse');
    const [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
    const row = db().prepare('SELECT tenant, type, key_version FROM tokens WHERE token = ?').get(token) as {
      tenant: string;
      key_version: number;
    };
    const key = (await v.opened.keys.keyVersion(row.tenant, 'data', row.key_version))!;
    const sealed = seal(key, Buffer.from('4111111111111111'), valueAad(row.tenant, 'pan', token, row.key_version));
    db()
      .prepare('UPDATE tokens SET nonce = ?, ciphertext = ?, tag = ?, binding = 1, preserve = NULL WHERE token = ?')
      .run(sealed.nonce, sealed.ciphertext, sealed.tag, token);
    expect((await charge([token])).body.items[0]).to.deep.equal({ token, error: { code: 'integrity_failed' } });
  });

  describe('deterministic identity includes format and preserve; other attributes must agree', () => {
    it('gives a random-format request its own token, never the earlier last-4 one', async () => {
      const value = '4111111111111111';
      const [pan] = await v.tokenize([{ type: 'pan', value, deterministic: true }]);
      const [random] = await v.tokenize([{ type: 'pan', value, deterministic: true, format: 'random' }]);
      const [none] = await v.tokenize([{ type: 'pan', value, deterministic: true, format: 'pan', preserve: 'none' }]);
      expect(random).to.match(/^tok_/);
      expect(new Set([pan, random, none]).size).to.equal(3);
      expect(await v.tokenize([{ type: 'pan', value, deterministic: true, format: 'pan', preserve: 'last4' }])).to.deep.equal([pan]);
      expect(await v.tokenize([{ type: 'pan', value, deterministic: true, format: 'random' }])).to.deep.equal([random]);
    });

    for (const [field, first, second] of [
      ['ttlSeconds', { ttlSeconds: 1 }, {}],
      ['ttlSeconds', { ttlSeconds: 1 }, { ttlSeconds: 3600 }],
      ['subject', { subject: 'cust_1' }, { subject: 'cust_2' }],
      ['subject', {}, { subject: 'cust_2' }],
      ['metadata', { metadata: { a: 1 } }, { metadata: { a: 2 } }],
      ['metadata', { metadata: { a: 1 } }, {}],
    ] as const) {
      it(`answers 409 deterministic_conflict for a different ${field} (${JSON.stringify(first)} then ${JSON.stringify(second)})`, async () => {
        const item = { type: 'ssn', value: '123-45-6789', deterministic: true };
        await v.tokenize([{ ...item, ...first }]);
        const before = (db().prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;
        const auditBefore = (await v.opened.store.auditRows(0, 10_000)).length;
        const res = await tokenize([
          { type: 'text', value: 'unrelated' },
          { ...item, ...second },
        ]);
        expect(res.status).to.equal(409);
        expect(res.body.error).to.include({ code: 'deterministic_conflict' });
        expect(res.body.error.details).to.deep.equal({ index: 1, field });
        expect((db().prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n).to.equal(before);
        // The refusal is audited, and its row names no subject (not the one the record does not have).
        const added = (await v.opened.store.auditRows(0, 10_000)).slice(auditBefore);
        expect(added.map((r) => [r.action, r.outcome, r.reason, r.types, r.subjects])).to.deep.equal([
          ['tokenize', 'deny', 'deterministic_conflict', ['text', 'ssn'], []],
        ]);
      });
    }

    it('returns the token when the attributes agree (metadata key order and the ttl as a lifetime)', async () => {
      const item = { type: 'ssn', value: '123-45-6789', deterministic: true, ttlSeconds: 60, subject: 'cust_1' };
      const [token] = await v.tokenize([{ ...item, metadata: { a: 1, b: 'x' } }]);
      later(5_000);
      expect(await v.tokenize([{ ...item, metadata: { b: 'x', a: 1 } }])).to.deep.equal([token]);
    });

    it('refuses duplicates inside one batch whose attributes differ', async () => {
      const item = { type: 'email', value: 'jane@example.com', deterministic: true };
      const res = await tokenize([item, { ...item, ttlSeconds: 5 }]);
      expect(res.status).to.equal(409);
      expect(res.body.error.details).to.deep.equal({ index: 1, field: 'ttlSeconds' });
    });
  });
});
