import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { createTestVault, TestVault } from '../helpers/test-vault';

const CANARIES = [
  { type: 'pan', value: '4000 0566 5566 5556', stored: '4000056655665556' },
  { type: 'ssn', value: '219-09-9999', stored: '219099999' },
  { type: 'email', value: 'canary.person@canary-mail.example', stored: 'canary.person@canary-mail.example' },
  { type: 'name', value: 'Zebulon Canarywood', stored: 'Zebulon Canarywood' },
  { type: 'text', value: 'the-canary-sings-at-midnight', stored: 'the-canary-sings-at-midnight' },
];

function fileBytes(path: string): Buffer {
  return existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
}

describe('storage security', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  const charge = (tokens: string[]) => v.http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' });
  const db = () => v.opened.store.db;

  it('never writes a plaintext value or subject id to the database, WAL or shm file', async () => {
    await v.tokenize(CANARIES.map((c) => ({ type: c.type, value: c.value, deterministic: true, subject: 'canary-subject-77' })));
    await v.http
      .post('/v1/detokenize')
      .set(v.as('support'))
      .send({ tokens: ['tok_x'] });
    const file = v.opened.store.file;
    const bytes = Buffer.concat([fileBytes(file), fileBytes(`${file}-wal`), fileBytes(`${file}-shm`)]);
    expect(bytes.length).to.be.greaterThan(0);
    for (const needle of [...CANARIES.flatMap((c) => [c.value, c.stored]), 'canary-subject-77']) {
      expect(bytes.includes(Buffer.from(needle)), needle).to.equal(false);
      expect(bytes.includes(Buffer.from(needle, 'utf16le')), needle).to.equal(false);
      expect(bytes.includes(Buffer.from(Buffer.from(needle).toString('base64'))), needle).to.equal(false);
    }
  });

  it('DELETE leaves neither ciphertext, nonce, tag, sealed subject nor metadata in the database or its WAL once it answers 204', async () => {
    const [token, kept] = await v.tokenize([
      { type: 'text', value: 'deleted-value-1', subject: 'deleted-subject-1', metadata: { label: 'deleted-label-d41d8cd98f' } },
      { type: 'text', value: 'kept-value-2' },
    ]);
    const row = db().prepare('SELECT nonce, ciphertext, tag, subject_sealed, metadata FROM tokens WHERE token = ?').get(token) as Record<
      string,
      Buffer | string
    >;
    const file = v.opened.store.file;
    const stored = () => Buffer.concat([fileBytes(file), fileBytes(`${file}-wal`)]);
    const needles = { ...row, label: 'deleted-label-d41d8cd98f' } as Record<string, Buffer | string>;
    // The scan can see them: before the deletion every part is in the files.
    for (const [name, needle] of Object.entries(needles)) expect(stored().includes(needle), `${name} before`).to.equal(true);

    const res = await v.http.delete(`/v1/tokens/${token}`).set(v.as('billing'));
    expect(res.status).to.equal(204);
    const after = stored();
    for (const [name, needle] of Object.entries(needles)) expect(after.includes(needle), `${name} after`).to.equal(false);
    expect((await charge([kept])).status).to.equal(200);
  });

  it('an expired deterministic record replaced by tokenize leaves its ciphertext, sealed subject and metadata in neither file', async () => {
    const item = { type: 'text', value: 'replaced-value-3', deterministic: true, ttlSeconds: 1 };
    const [old] = await v.tokenize([{ ...item, subject: 'replaced-subject-3', metadata: { label: 'replaced-label-9e107d9d37' } }]);
    const row = db().prepare('SELECT nonce, ciphertext, tag, subject_sealed, metadata FROM tokens WHERE token = ?').get(old) as Record<
      string,
      Buffer | string
    >;
    const file = v.opened.store.file;
    const stored = () => Buffer.concat([fileBytes(file), fileBytes(`${file}-wal`)]);
    const needles = { ...row, label: 'replaced-label-9e107d9d37' } as Record<string, Buffer | string>;
    for (const [name, needle] of Object.entries(needles)) expect(stored().includes(needle), `${name} before`).to.equal(true);

    const realNow = v.opened.vault.deps.now;
    v.opened.vault.deps.now = () => realNow() + 2_000;
    const [fresh] = await v.tokenize([item]);
    expect(fresh).not.to.equal(old);
    const after = stored();
    for (const [name, needle] of Object.entries(needles)) expect(after.includes(needle), `${name} after`).to.equal(false);
  });

  it('keeps values out of audit rows; subjects appear only as random handles (not even as HMACs)', async () => {
    await v.tokenize([{ type: 'pan', value: '4000056655665556', subject: 'cust_secret_42' }]);
    const rows = JSON.stringify(db().prepare('SELECT * FROM audit').all());
    expect(rows).not.to.contain('4000056655665556');
    expect(rows).not.to.contain('cust_secret_42');
    const hmac = (db().prepare('SELECT hex(subject_hash) FROM tokens').pluck().get() as string).toLowerCase();
    expect(rows).not.to.contain(hmac);
    const tokenizeRow = (await v.opened.store.auditRows(0, 100)).find((r) => r.action === 'tokenize')!;
    expect(tokenizeRow.subjects).to.have.length(1);
    expect(tokenizeRow.subjects[0]).to.match(/^[0-9a-f]{32}$/);
  });

  describe('tampering gives integrity_failed, never a wrong value', () => {
    let tokens: string[];
    beforeEach(async () => {
      tokens = await v.tokenize([
        { type: 'pan', value: '4111111111111111' },
        { type: 'pan', value: '5555555555554444' },
      ]);
    });

    for (const column of ['nonce', 'ciphertext', 'tag']) {
      it(`when one bit of the ${column} flips`, async () => {
        const row = db().prepare(`SELECT ${column} AS b FROM tokens WHERE token = ?`).get(tokens[0]) as { b: Buffer };
        const flipped = Buffer.from(row.b);
        flipped[flipped.length - 1] ^= 0x01;
        db().prepare(`UPDATE tokens SET ${column} = ? WHERE token = ?`).run(flipped, tokens[0]);
        const res = await charge(tokens);
        expect(res.body.items[0]).to.deep.equal({ token: tokens[0], error: { code: 'integrity_failed' } });
        expect(res.body.items[1].value).to.equal('5555555555554444');
      });
    }

    it("when another row's ciphertext, nonce and tag are copied in", async () => {
      db()
        .prepare(`UPDATE tokens SET (nonce, ciphertext, tag) = (SELECT nonce, ciphertext, tag FROM tokens WHERE token = ?) WHERE token = ?`)
        .run(tokens[1], tokens[0]);
      const res = await charge([tokens[0]]);
      expect(res.body.items[0]).to.deep.equal({ token: tokens[0], error: { code: 'integrity_failed' } });
    });

    it("when another tenant's ciphertext, nonce and tag are copied in", async () => {
      v.opened.vault.deps.policy().principals.billing.tenants = ['default', 'acme'];
      const acme = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ tenant: 'acme', items: [{ type: 'pan', value: '378282246310005' }] });
      db()
        .prepare(`UPDATE tokens SET (nonce, ciphertext, tag) = (SELECT nonce, ciphertext, tag FROM tokens WHERE token = ?) WHERE token = ?`)
        .run(acme.body.items[0].token, tokens[0]);
      const res = await charge([tokens[0]]);
      expect(res.body.items[0]).to.deep.equal({ token: tokens[0], error: { code: 'integrity_failed' } });
    });

    it('when the row is moved to another tenant', async () => {
      v.opened.vault.deps.policy().principals.gateway.tenants = ['*'];
      db().prepare("UPDATE tokens SET tenant = 'acme' WHERE token = ?").run(tokens[0]);
      const res = await charge([tokens[0]]);
      expect(res.body.items[0].error.code).to.equal('integrity_failed');
    });

    it('when the key version is changed', async () => {
      db().prepare('UPDATE tokens SET key_version = 2 WHERE token = ?').run(tokens[0]);
      const res = await charge([tokens[0]]);
      expect(res.body.items[0].error.code).to.equal('integrity_failed');
    });

    it('when the wrapped data key is altered: integrity_failed per item, and tokenize under it is refused', async () => {
      const row = db().prepare("SELECT wrapped FROM data_keys WHERE tenant = 'default' AND purpose = 'data'").get() as { wrapped: Buffer };
      const flipped = Buffer.from(row.wrapped);
      flipped[5] ^= 0x80;
      db().prepare("UPDATE data_keys SET wrapped = ? WHERE tenant = 'default' AND purpose = 'data'").run(flipped);
      v.opened.keys.clear();
      const res = await charge(tokens);
      expect(res.status).to.equal(200);
      expect(res.body.items.map((i: { error?: { code: string } }) => i.error?.code)).to.deep.equal([
        'integrity_failed',
        'integrity_failed',
      ]);
      expect(JSON.stringify(res.body)).not.to.contain('4111111111111111');
      const tok = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ items: [{ type: 'pan', value: '4111111111111111' }] });
      expect(tok.status).to.equal(503);
      expect(tok.body.error.code).to.equal('key_unavailable');
    });
  });

  describe('fail closed when the audit log cannot be written', () => {
    let token: string;
    beforeEach(async () => {
      [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
      db().exec("CREATE TRIGGER audit_broken BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    });

    it('detokenize returns 503 audit_unavailable and no value', async () => {
      const res = await charge([token]);
      expect(res.status).to.equal(503);
      expect(res.body.error.code).to.equal('audit_unavailable');
      expect(JSON.stringify(res.body)).not.to.contain('4111');
    });

    it('tokenize returns 503 and stores nothing', async () => {
      const before = (db().prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;
      const res = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ items: [{ type: 'pan', value: '5555555555554444' }] });
      expect(res.status).to.equal(503);
      expect((db().prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n).to.equal(before);
    });

    it('metadata reads and deletes are refused too', async () => {
      expect((await v.http.get(`/v1/tokens/${token}`).set(v.as('security'))).status).to.equal(503);
      expect((await v.http.delete(`/v1/tokens/${token}`).set(v.as('billing'))).status).to.equal(503);
      db().exec('DROP TRIGGER audit_broken');
      expect((await v.http.get(`/v1/tokens/${token}`).set(v.as('security'))).status).to.equal(200);
    });
  });
});
