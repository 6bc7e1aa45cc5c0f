import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { StreamedDocument } from '../../src/service/streamed-document';
import { AuditUnavailableError, StoreUnavailableError } from '../../src/store/vault-store';
import { createTestVault, TestVault } from '../helpers/test-vault';
import { waitFor } from '../helpers/wait-for';

type Who = 'billing' | 'gateway' | 'support' | 'security';

const SUBJECT = 'cust-8d3f-subject';
const OTHER = 'cust-other-subject';

function fileBytes(path: string): Buffer {
  return existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
}

describe('data subject rights: /v1/subjects/*', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  const post = (path: string, who: Who, body: object) => v.http.post(`/v1/subjects/${path}`).set(v.as(who)).send(body);
  const detokenize = (who: Who, body: object) => v.http.post('/v1/detokenize').set(v.as(who)).send(body);
  const auditRows = () => v.opened.store.auditRows(0, 1_000_000);
  /** The handle (hex) of the subject of a token's record. */
  const handleOf = (token: string) =>
    (
      v.opened.store.db
        .prepare('SELECT hex(handle) FROM subjects s JOIN tokens t USING (tenant, subject_hash) WHERE t.token = ?')
        .pluck()
        .get(token) as string
    ).toLowerCase();
  const policy = () => v.opened.vault.deps.policy();

  describe('audit rows name subjects by handle', () => {
    it('tokenize, detokenize (allowed and denied), read-metadata and delete name the handle, never the id or its HMAC', async () => {
      const [token, plain] = await v.tokenize([
        { type: 'pan', value: '4000056655665556', subject: SUBJECT },
        { type: 'text', value: 'no subject here' },
      ]);
      const handle = handleOf(token);
      const hmac = (
        v.opened.store.db.prepare('SELECT hex(subject_hash) FROM tokens WHERE token = ?').pluck().get(token) as string
      ).toLowerCase();
      expect(handle).to.match(/^[0-9a-f]{32}$/);
      await detokenize('gateway', { tokens: [token, plain], purpose: 'charge' });
      await detokenize('gateway', { tokens: [token], purpose: 'refund' }); // denied by the policy, the record found
      await detokenize('support', { tokens: [plain] });
      await v.http.get(`/v1/tokens/${token}`).set(v.as('security'));
      policy().roles.support[1].types = ['email'];
      await v.http.get(`/v1/tokens/${token}`).set(v.as('support')); // denied: read-metadata on emails only
      // Refused before any record is looked up (no grant of the action at all): nothing found, nobody named.
      await detokenize('billing', { tokens: [token] });
      await v.http.delete(`/v1/tokens/${token}`).set(v.as('billing'));
      const rows = await auditRows();
      const named = rows.filter((r) => r.subjects.length > 0).map((r) => `${r.action}/${r.outcome}`);
      expect(named).to.deep.equal([
        'tokenize/allow',
        'detokenize/partial',
        'detokenize/deny',
        'read-metadata/allow',
        'read-metadata/deny',
        'delete/allow',
      ]);
      for (const row of rows) expect(row.subjects.every((s) => s === handle)).to.equal(true);
      const text = JSON.stringify(rows);
      expect(text).not.to.contain(SUBJECT);
      expect(text).not.to.contain(hmac);
    });
  });

  describe('consent and purpose limitation', () => {
    it('purposes recorded at tokenize (top level and per item) limit detokenize to them; no purpose is refused', async () => {
      const res = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({
          purposes: ['billing'],
          items: [
            { type: 'email', value: 'jane@example.com', subject: SUBJECT, purposes: ['support'] },
            { type: 'email', value: 'joe@example.com', subject: OTHER },
            { type: 'email', value: 'none@example.org', subject: 'cust-no-consent' },
          ],
        });
      expect(res.status).to.equal(200);
      const [jane, joe] = res.body.items.map((i: { token: string }) => i.token);
      const [free] = await v.tokenize([{ type: 'email', value: 'free@example.com', subject: 'cust-never-asked' }]);

      const support = await detokenize('support', { tokens: [jane, joe, free], purpose: 'support' });
      expect(support.status).to.equal(200);
      expect(support.body.items).to.deep.equal([
        { token: jane, type: 'email', value: 'j***@example.com', reveal: 'masked' },
        { token: joe, error: { code: 'forbidden', reason: 'consent_not_given' } },
        { token: free, type: 'email', value: 'f***@example.com', reveal: 'masked' },
      ]);
      const unstated = await detokenize('support', { tokens: [joe] });
      expect(unstated.body.items).to.deep.equal([{ token: joe, error: { code: 'forbidden', reason: 'consent_not_given' } }]);
      const billing = await detokenize('support', { tokens: [joe], purpose: 'billing' });
      expect(billing.body.items[0].reveal).to.equal('masked');
      const last = (await auditRows()).filter((r) => r.action === 'detokenize');
      expect(last[0]).to.include({ outcome: 'partial', reason: '1 consent_not_given' });
    });

    it('a policy refusal stays a plain forbidden (the policy is asked first)', async () => {
      const [pan] = await v.tokenize([{ type: 'pan', value: '4242424242424242', subject: SUBJECT }]);
      const res = await detokenize('gateway', { tokens: [pan], purpose: 'refund' });
      expect(res.body.items).to.deep.equal([{ token: pan, error: { code: 'forbidden' } }]);
    });

    it('purposes without a subject are a 400 naming the item; nothing is stored', async () => {
      for (const body of [
        { items: [{ type: 'text', value: 'a', purposes: ['billing'] }] },
        {
          purposes: ['billing'],
          items: [
            { type: 'text', value: 'a', subject: SUBJECT },
            { type: 'text', value: 'b' },
          ],
        },
      ]) {
        const res = await v.http.post('/v1/tokenize').set(v.as('billing')).send(body);
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
        expect(res.body.error.message).to.match(/^items\[\d\]: purposes record a subject's consent/);
      }
      expect(v.opened.store.db.prepare('SELECT count(*) FROM tokens').pluck().get()).to.equal(0);
    });

    it('withdrawal blocks detokenize at once; grant restores it; the changes are audited under the handle', async () => {
      const [pan] = await v.tokenize([{ type: 'pan', value: '4242424242424242', subject: SUBJECT }]);
      const charge = () => detokenize('gateway', { tokens: [pan], purpose: 'charge' });
      expect((await charge()).body.items[0].reveal, 'no consent recorded: no restriction').to.equal('plain');

      const granted = await post('consent', 'billing', { subject: SUBJECT, grant: ['charge', 'billing'] });
      expect(granted.status).to.equal(200);
      expect(granted.body).to.deep.equal({ tenant: 'default', consentedPurposes: ['charge', 'billing'] });
      expect((await charge()).body.items[0].reveal).to.equal('plain');

      const withdrawn = await post('consent', 'billing', { subject: SUBJECT, withdraw: ['charge'] });
      expect(withdrawn.body.consentedPurposes).to.deep.equal(['billing']);
      expect((await charge()).body.items[0]).to.deep.equal({ token: pan, error: { code: 'forbidden', reason: 'consent_not_given' } });

      await post('consent', 'security', { subject: SUBJECT, grant: ['charge'] });
      expect((await charge()).body.items[0].reveal).to.equal('plain');
      const consentRows = (await auditRows()).filter((r) => r.action === 'subject:consent');
      expect(consentRows.map((r) => r.reason)).to.deep.equal(['granted charge, billing', 'withdrew charge', 'granted charge']);
      const handle = handleOf(pan);
      for (const row of consentRows) expect(row.subjects).to.deep.equal([handle]);
    });

    it('a tokenize recording consent needs the subject:consent grant: a tokenize-only caller cannot undo a withdrawal', async () => {
      const [pan] = await v.tokenize([{ type: 'pan', value: '4242424242424242', subject: SUBJECT }]);
      await post('consent', 'billing', { subject: SUBJECT, grant: ['billing'] });
      // billing keeps tokenize, read-metadata and delete, but loses subject:consent.
      policy().roles.billing = policy().roles.billing.filter((g) => !g.actions.includes('subject:consent'));
      const regrant = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ purposes: ['charge'], items: [{ type: 'text', value: 'any note', subject: SUBJECT }] });
      expect(regrant.status).to.equal(403);
      expect(regrant.body.error.code).to.equal('forbidden');
      expect((await auditRows()).at(-1)).to.include({ action: 'tokenize', outcome: 'deny', reason: 'no subject:consent grant' });
      const charge = await detokenize('gateway', { tokens: [pan], purpose: 'charge' });
      expect(charge.body.items[0]).to.deep.equal({ token: pan, error: { code: 'forbidden', reason: 'consent_not_given' } });
      expect(v.opened.store.db.prepare('SELECT count(*) FROM tokens').pluck().get(), 'nothing stored').to.equal(1);
      // Without purposes, tokenizing for the subject needs no consent grant.
      await v.tokenize([{ type: 'text', value: 'any note', subject: SUBJECT }]);
    });

    it('consent requests are validated: something to change, no purpose both granted and withdrawn', async () => {
      for (const body of [
        { subject: SUBJECT },
        { subject: SUBJECT, grant: ['a'], withdraw: ['a'] },
        { subject: SUBJECT, grant: [] },
        { subject: SUBJECT, grant: ['1234567890123'] },
        { subject: SUBJECT, grant: ['a', 'a'] },
      ]) {
        const res = await post('consent', 'billing', body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
      }
    });

    it('a consented set holds at most 32 purposes: a grant above answers 400 too_many_purposes and changes nothing', async () => {
      const named = (from: number, n: number) => Array.from({ length: n }, (_, i) => `purpose_${from + i}`);
      expect((await post('consent', 'billing', { subject: SUBJECT, grant: named(0, 32) })).status).to.equal(200);
      const res = await post('consent', 'billing', { subject: SUBJECT, grant: ['one_more'] });
      expect(res.status).to.equal(400);
      expect(res.body.error).to.include({ code: 'too_many_purposes' });
      const after = await post('consent', 'billing', { subject: SUBJECT, withdraw: ['purpose_0'] });
      expect(after.body.consentedPurposes).to.deep.equal(named(1, 31));
    });
  });

  describe('export', () => {
    it('streams every record with its value at the reveal level the policy gives, the consent, and is audited first', async () => {
      policy().roles.support.push({ actions: ['subject:export'] });
      const [pan, email] = await v.tokenize([
        { type: 'pan', value: '4242424242424242', subject: SUBJECT, metadata: { plan: 'gold' } },
        { type: 'email', value: 'jane@example.com', subject: SUBJECT, ttlSeconds: 3600 },
        { type: 'email', value: 'other@example.com', subject: OTHER },
      ]);
      await post('consent', 'billing', { subject: SUBJECT, grant: ['billing'] });
      const res = await post('export', 'support', { subject: SUBJECT });
      expect(res.status).to.equal(200);
      expect(res.headers['transfer-encoding']).to.equal('chunked');
      expect(res.body.tenant).to.equal('default');
      expect(res.body.consentedPurposes).to.deep.equal(['billing']);
      const byToken = Object.fromEntries(res.body.records.map((r: { token: string }) => [r.token, r]));
      expect(Object.keys(byToken)).to.have.members([pan, email]);
      expect(byToken[pan]).to.deep.include({
        type: 'pan',
        format: 'pan',
        value: '************4242',
        reveal: 'masked',
        metadata: { plan: 'gold' },
      });
      expect(byToken[email]).to.deep.include({ type: 'email', value: 'j***@example.com', reveal: 'masked', metadata: null });
      expect(byToken[email].expiresAt).to.be.a('string');
      // Security may export but may not detokenize: every value redacted.
      const security = await post('export', 'security', { subject: SUBJECT });
      expect(security.body.records.map((r: { value: unknown; reveal: string }) => [r.value, r.reveal])).to.deep.equal([
        [null, 'redacted'],
        [null, 'redacted'],
      ]);
      const exports = (await auditRows()).filter((r) => r.action === 'subject:export');
      expect(exports).to.have.length(2);
      expect(exports[0].subjects).to.deep.equal([handleOf(pan)]);
      expect(JSON.stringify(exports)).not.to.contain(SUBJECT);
    });

    it('pages through a subject with more records than one store read (1,200), each once, in token order', async () => {
      const items = Array.from({ length: 600 }, (_, i) => ({ type: 'text', value: `value ${i}`, subject: SUBJECT }));
      const tokens = [...(await v.tokenize(items)), ...(await v.tokenize(items))];
      const res = await post('export', 'security', { subject: SUBJECT });
      expect(res.status).to.equal(200);
      expect(res.body.records.map((r: { token: string }) => r.token)).to.deep.equal([...tokens].sort());
    });

    it('a store failure after the first page cuts the connection: the document is never complete-looking', async () => {
      const items = Array.from({ length: 600 }, (_, i) => ({ type: 'text', value: `value ${i}`, subject: SUBJECT }));
      await v.tokenize(items);
      const store = v.opened.store;
      const read = store.subjectRecords.bind(store);
      let pages = 0;
      store.subjectRecords = async (...args) => {
        if (pages++ === 1) throw new StoreUnavailableError('database gone');
        return read(...args);
      };
      try {
        const err = await post('export', 'security', { subject: SUBJECT }).then(
          () => undefined,
          (e: Error) => e,
        );
        expect(err, 'the request fails instead of answering a truncated list as complete').to.be.instanceOf(Error);
        expect(pages).to.equal(2);
      } finally {
        store.subjectRecords = read;
      }
      expect((await post('export', 'security', { subject: SUBJECT })).body.records).to.have.length(600);
    });

    it('an export whose client goes away mid-stream stops (it does not wait forever for the socket to drain)', async () => {
      policy().roles.support.push({ actions: ['subject:export'] }, { actions: ['detokenize'], types: ['text'], reveal: 'plain' });
      // Far more than the socket buffers hold, so the server has to wait for the reader.
      for (let b = 0; b < 15; b++) {
        await v.tokenize(
          Array.from({ length: 200 }, (_, i) => ({ type: 'text', value: `${'x'.repeat(2000)} ${b}/${i}`, subject: SUBJECT })),
        );
      }
      const vault = v.opened.vault;
      const exportSubject = vault.exportSubject.bind(vault);
      let stopped = false;
      vault.exportSubject = async (...args) => {
        const doc = await exportSubject(...args);
        async function* watched() {
          try {
            yield* doc.items;
          } finally {
            stopped = true;
          }
        }
        return new StreamedDocument(doc.fields, doc.list, watched());
      };
      const server = http.createServer(createApp({ vault, logger: createLogger('silent') }));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const body = JSON.stringify({ subject: SUBJECT });
        const req = http.request({
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          method: 'POST',
          path: '/v1/subjects/export',
          agent: false,
          headers: { ...v.as('support'), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        });
        const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
          req.on('response', resolve);
          req.on('error', reject);
          req.end(body);
        });
        expect(response.statusCode).to.equal(200);
        response.pause(); // reads nothing more…
        req.on('error', () => undefined);
        req.destroy(); // …and goes away
        await waitFor(() => stopped, { what: 'the abandoned export to stop reading the subject' });
      } finally {
        vault.exportSubject = exportSubject;
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('fails closed: no value leaves when the audit row cannot be written', async () => {
      policy().roles.support.push({ actions: ['subject:export'] });
      await v.tokenize([{ type: 'pan', value: '4242424242424242', subject: SUBJECT }]);
      const audit = v.opened.vault.deps.audit;
      const append = audit.append.bind(audit);
      audit.append = async () => {
        throw new AuditUnavailableError(new Error('disk full'));
      };
      try {
        const res = await post('export', 'support', { subject: SUBJECT });
        expect(res.status).to.equal(503);
        expect(res.body.error.code).to.equal('audit_unavailable');
        expect(res.text).not.to.contain('4242');
      } finally {
        audit.append = append;
      }
    });

    it('lists a record that does not open (altered) with no value and integrity_failed, the others as usual', async () => {
      policy().roles.support.push({ actions: ['subject:export'] });
      const [altered, intact] = await v.tokenize([
        { type: 'pan', value: '4242424242424242', subject: SUBJECT },
        { type: 'pan', value: '5555555555554444', subject: SUBJECT },
      ]);
      v.opened.store.db.prepare('UPDATE tokens SET ciphertext = ? WHERE token = ?').run(Buffer.alloc(16, 1), altered);
      const res = await post('export', 'support', { subject: SUBJECT });
      expect(res.status).to.equal(200);
      const byToken = Object.fromEntries(res.body.records.map((r: { token: string }) => [r.token, r]));
      expect(byToken[altered]).to.deep.include({ value: null, reveal: 'redacted', error: { code: 'integrity_failed' } });
      expect(byToken[intact]).to.deep.include({ value: '************4444', reveal: 'masked' });
      expect(byToken[intact]).not.to.have.property('error');
    });

    it('an unknown subject exports nothing (audited all the same)', async () => {
      const res = await post('export', 'security', { subject: 'nobody-at-all' });
      expect(res.body).to.deep.equal({ tenant: 'default', consentedPurposes: null, records: [] });
      expect((await auditRows()).at(-1)).to.include({ action: 'subject:export', outcome: 'allow' });
    });
  });

  describe('access log', () => {
    it('lists exactly the audited decisions naming the subject (denied detokenize attempts included), as a filter over all rows would', async () => {
      const [pan, email] = await v.tokenize([
        { type: 'pan', value: '4242424242424242', subject: SUBJECT },
        { type: 'email', value: 'jane@example.com', subject: SUBJECT },
      ]);
      const [other] = await v.tokenize([{ type: 'email', value: 'joe@example.com', subject: OTHER }]);
      await detokenize('gateway', { tokens: [pan], purpose: 'charge' });
      await detokenize('gateway', { tokens: [email], purpose: 'charge' }); // denied: email not in the grant
      await detokenize('support', { tokens: [other] });
      await v.http.get(`/v1/tokens/${email}`).set(v.as('security'));
      await post('consent', 'billing', { subject: SUBJECT, grant: ['billing'] });
      await detokenize('support', { tokens: [pan], purpose: 'marketing' }); // consent refuses

      const res = await post('access-log', 'security', { subject: SUBJECT });
      expect(res.status).to.equal(200);
      const handle = handleOf(pan);
      const expected = (await auditRows())
        .filter((r) => r.subjects.includes(handle))
        .map(({ seq, ts, principal, action, types, purpose, outcome, reason, requestId }) => ({
          seq,
          ts,
          principal,
          action,
          types,
          purpose,
          outcome,
          reason,
          requestId,
        }));
      expect(res.body).to.deep.equal({ tenant: 'default', entries: expected });
      expect(expected.map((e) => `${e.principal}:${e.action}:${e.outcome}`)).to.deep.equal([
        'billing:tokenize:allow',
        'gateway:detokenize:allow',
        'gateway:detokenize:deny',
        'security:read-metadata:allow',
        'billing:subject:consent:allow',
        'support:detokenize:deny',
        'security:subject:access-log:allow',
      ]);
      expect(expected.find((e) => e.purpose === 'marketing')!.reason).to.equal('1 consent_not_given');
    });

    it("a decision on several tenants at once is listed without the other tenants' part to a caller not covering them", async () => {
      const policyDoc = policy();
      policyDoc.principals.billing.tenants = ['default', 'acme'];
      policyDoc.principals.gateway.tenants = ['default', 'acme'];
      policyDoc.roles.gateway.push({ actions: ['detokenize'], types: ['email'], reveal: 'masked' });
      const [pan] = await v.tokenize([{ type: 'pan', value: '4242424242424242', subject: SUBJECT }]);
      const acme = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({
          tenant: 'acme',
          items: [
            { type: 'email', value: 'ann@acme.example' },
            { type: 'text', value: 'acme note' },
          ],
        });
      expect(acme.status).to.equal(200);
      const both = await detokenize('gateway', {
        tokens: [pan, ...acme.body.items.map((i: { token: string }) => i.token)],
        purpose: 'charge',
      });
      expect(both.status).to.equal(200);
      const row = (await auditRows()).at(-1)!;
      expect(row).to.include({ tenant: null, outcome: 'partial' });
      expect(row.types).to.include('email');
      expect(row.reason).to.equal('1 forbidden');

      const entryOf = async () =>
        (await post('access-log', 'security', { subject: SUBJECT })).body.entries.find((e: { seq: number }) => e.seq === row.seq);
      expect(await entryOf(), 'a caller covering every tenant sees the whole row').to.deep.include({
        types: row.types,
        reason: row.reason,
      });
      policyDoc.principals.security.tenants = ['default'];
      expect(await entryOf()).to.deep.include({ principal: 'gateway', action: 'detokenize', outcome: 'partial', types: [], reason: null });
    });

    it('from/to keep the decisions in [from, to); bad timestamps are a 400', async () => {
      const [token] = await v.tokenize([{ type: 'text', value: 'x', subject: SUBJECT }]);
      const realNow = v.opened.vault.deps.now;
      v.opened.vault.deps.now = () => Date.parse('2030-01-01T00:00:00Z');
      await v.http.get(`/v1/tokens/${token}`).set(v.as('security'));
      v.opened.vault.deps.now = realNow;
      const within = await post('access-log', 'security', {
        subject: SUBJECT,
        from: '2029-12-31T23:59:59Z',
        to: '2030-01-01T00:00:01+00:00',
      });
      expect(within.body.entries.map((e: { action: string }) => e.action)).to.deep.equal(['read-metadata']);
      const before = await post('access-log', 'security', { subject: SUBJECT, to: '2030-01-01T00:00:00Z' });
      // The access log requests are audited decisions on the subject too (made now, before 2030).
      expect(before.body.entries.map((e: { action: string }) => e.action)).to.deep.equal([
        'tokenize',
        'subject:access-log',
        'subject:access-log',
      ]);
      const after = await post('access-log', 'security', { subject: SUBJECT, from: '2030-01-01T00:00:00.000Z' });
      expect(after.body.entries.map((e: { action: string }) => e.action)).to.deep.equal(['read-metadata']);
      for (const body of [
        { subject: SUBJECT, from: 'yesterday' },
        { subject: SUBJECT, from: '2030-01-02T00:00:00Z', to: '2030-01-01T00:00:00Z' },
        { subject: SUBJECT, to: '2030-13-45T00:00:00Z' },
        { subject: SUBJECT, from: '2021-02-29T00:00:00Z' }, // not a calendar date (V8 would read 1 March)
        { subject: SUBJECT, to: '2030-04-31T00:00Z' },
      ]) {
        const res = await post('access-log', 'security', body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
      }
    });
  });

  describe('erase', () => {
    it("deletes the subject's records and the handle's link to it from the database and its WAL; others stay; the chain verifies", async () => {
      const db = v.opened.store.db;
      const [gone1, gone2] = await v.tokenize([
        { type: 'pan', value: '4242424242424242', subject: SUBJECT, deterministic: true },
        { type: 'text', value: 'erased free text', subject: SUBJECT, metadata: { label: 'erased-label-77e1' } },
      ]);
      const [kept] = await v.tokenize([{ type: 'text', value: 'kept text', subject: OTHER }]);
      await detokenize('support', { tokens: [gone1, kept] });
      const row = (token: string) =>
        db
          .prepare('SELECT nonce, ciphertext, tag, fingerprint, subject_hash, subject_sealed FROM tokens WHERE token = ?')
          .get(token) as Record<string, Buffer | null>;
      const handle = db
        .prepare('SELECT handle FROM subjects s JOIN tokens t USING (tenant, subject_hash) WHERE t.token = ?')
        .pluck()
        .get(gone1) as Buffer;
      const needles: Record<string, Buffer> = { handle, label: Buffer.from('erased-label-77e1') };
      for (const token of [gone1, gone2]) {
        for (const [column, bytes] of Object.entries(row(token))) if (bytes) needles[`${token}.${column}`] = bytes;
      }
      const file = v.opened.store.file;
      const stored = () => Buffer.concat([fileBytes(file), fileBytes(`${file}-wal`)]);
      for (const [name, needle] of Object.entries(needles)) expect(stored().includes(needle), `${name} before`).to.equal(true);
      expect(db.pragma('secure_delete', { simple: true })).to.equal(1);

      const res = await post('erase', 'security', { subject: SUBJECT });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ tenant: 'default', erased: { records: 2 } });

      const after = stored();
      for (const [name, needle] of Object.entries(needles)) expect(after.includes(needle), `${name} after`).to.equal(false);
      const gone = await detokenize('support', { tokens: [gone1, gone2, kept] });
      expect(gone.body.items.slice(0, 2)).to.deep.equal([
        { token: gone1, error: { code: 'not_found' } },
        { token: gone2, error: { code: 'not_found' } },
      ]);
      expect(gone.body.items[2]).to.include({ token: kept, reveal: 'masked' });
      expect((await post('export', 'security', { subject: SUBJECT })).body.records).to.deep.equal([]);
      expect((await post('access-log', 'security', { subject: SUBJECT })).body.entries, 'the handle is unlinked').to.deep.equal([]);
      expect((await post('export', 'security', { subject: OTHER })).body.records).to.have.length(1);
      const verify = await v.http.get('/v1/audit/verify').set(v.as('security'));
      expect(verify.body.ok).to.equal(true);
      const erasure = (await auditRows()).find((r) => r.action === 'subject:erase')!;
      expect(erasure).to.include({ outcome: 'allow', reason: 'erased 2 records and the subject row', tenant: 'default' });
      expect(erasure.subjects).to.deep.equal([]);
      const keys = await v.http.get('/v1/keys').set(v.as('security'));
      expect(keys.body.keys.find((k: { purpose: string }) => k.purpose === 'data').records).to.equal(1);
    });
  });

  describe('authorisation and validation', () => {
    const endpoints = [
      ['export', { subject: SUBJECT }],
      ['access-log', { subject: SUBJECT }],
      ['erase', { subject: SUBJECT }],
      ['consent', { subject: SUBJECT, grant: ['billing'] }],
    ] as const;

    for (const [path, body] of endpoints) {
      it(`${path}: 403 without the action (audited), 403 for a tenant not granted, 400 for a bad subject or tenant`, async () => {
        const refused = await post(path, 'gateway', body);
        expect(refused.status).to.equal(403);
        expect(refused.body.error.code).to.equal('forbidden');
        const denial = (await auditRows()).at(-1)!;
        expect(denial).to.include({ principal: 'gateway', outcome: 'deny' });
        expect(denial.action).to.match(/^subject:/);

        const policyDoc = policy();
        policyDoc.principals.security.tenants = ['default'];
        policyDoc.principals.billing.tenants = ['default'];
        const otherTenant = await post(path, path === 'consent' ? 'billing' : 'security', { ...body, tenant: 'acme' });
        expect(otherTenant.status).to.equal(403);
        expect((await auditRows()).at(-1)!.tenant, 'a tenant not granted is not written down').to.equal(null);

        const who = path === 'consent' ? 'billing' : 'security';
        for (const bad of [
          { ...body, subject: 'x'.repeat(129) },
          { ...body, subject: '' },
          { ...body, subject: 'has space' },
          { ...body, tenant: 'Not_A_Tenant' },
          { ...body, extra: true },
          { tenant: 'default' },
        ]) {
          const res = await post(path, who, bad);
          expect(res.status, JSON.stringify(bad)).to.equal(400);
          expect(res.body.error.code).to.equal('invalid_request');
          expect(res.body.error.message).to.be.a('string');
        }
      });
    }

    it('export, access log and erasure in a tenant without keys find nothing and create no key (they are audited all the same)', async () => {
      for (const path of ['export', 'access-log', 'erase'] as const) {
        const res = await post(path, 'security', { tenant: `ghost-${path}`, subject: SUBJECT });
        expect(res.status, path).to.equal(200);
        expect(JSON.stringify(res.body), path).to.match(/"records":\[\]|"entries":\[\]|"records":0/);
      }
      const keys = await v.opened.store.listDataKeys();
      expect(
        keys.filter((k) => k.tenant.startsWith('ghost-')),
        'no key made for a read',
      ).to.deep.equal([]);
      const rows = (await auditRows()).filter((r) => r.tenant?.startsWith('ghost-'));
      expect(rows.map((r) => `${r.action}/${r.outcome}`)).to.deep.equal([
        'subject:export/allow',
        'subject:access-log/allow',
        'subject:erase/allow',
      ]);
    });

    it('the subject id never appears in a URL: these operations take it only in the body', async () => {
      const res = await v.http.get(`/v1/subjects/export?subject=${SUBJECT}`).set(v.as('security'));
      expect(res.status).to.equal(405);
      // A subject id put in the query is refused, not ignored, so the client sees its mistake instead of repeating it.
      for (const [path, body] of endpoints) {
        const who = path === 'consent' ? 'billing' : 'security';
        const queried = await v.http.post(`/v1/subjects/${path}?subject=${SUBJECT}`).set(v.as(who)).send(body);
        expect(queried.status, path).to.equal(400);
        expect(queried.body.error).to.include({ code: 'invalid_request', message: 'query: unknown field (allowed: none)' });
      }
      expect((await auditRows()).filter((r) => r.action.startsWith('subject:')).length, 'nothing was done').to.equal(0);
    });
  });
});
