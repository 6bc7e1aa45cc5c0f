import { expect } from 'chai';
import Database from 'better-sqlite3';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('faults: locked database, full disk', () => {
  let v: TestVault;
  let token: string;
  beforeEach(async () => {
    v = await createTestVault();
    [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
    v.opened.store.db.pragma('busy_timeout = 100');
  });
  afterEach(() => v.close());

  const count = () => (v.opened.store.db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;
  const integrity = () => v.opened.store.db.pragma('integrity_check', { simple: true });

  it('a database locked by another writer gives 503 (store or audit unavailable), no value, and recovers', async () => {
    const other = new Database(v.opened.store.file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const tok = await v.http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .send({ items: [{ type: 'pan', value: '5555555555554444' }] });
      expect(tok.status).to.equal(503);
      expect(tok.body.error.code).to.be.oneOf(['store_unavailable', 'audit_unavailable']);
      const det = await v.http
        .post('/v1/detokenize')
        .set(v.as('gateway'))
        .send({ tokens: [token], purpose: 'charge' });
      expect(det.status, 'no value leaves without its audit row').to.equal(503);
      expect(det.body.error.code).to.equal('audit_unavailable');
      expect(JSON.stringify(det.body)).not.to.contain('4111');
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(count()).to.equal(1);
    const again = await v.http
      .post('/v1/detokenize')
      .set(v.as('gateway'))
      .send({ tokens: [token], purpose: 'charge' });
    expect(again.body.items[0].value).to.equal('4111111111111111');
    expect(integrity()).to.equal('ok');
  });

  it('a full disk gives 503 store_unavailable, stores nothing of the batch, corrupts nothing, and recovers', async () => {
    const db = v.opened.store.db;
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    const big = Array.from({ length: 1000 }, (_, i) => ({ type: 'text', value: `filler ${i} `.repeat(40) }));
    const res = await v.http.post('/v1/tokenize').set(v.as('billing')).send({ items: big });
    expect(res.status).to.equal(503);
    expect(res.body.error.code).to.be.oneOf(['store_unavailable', 'audit_unavailable']);
    expect(count()).to.equal(1);
    expect(integrity()).to.equal('ok');
    db.pragma('max_page_count = 1073741823');
    const ok = await v.http.post('/v1/tokenize').set(v.as('billing')).send({ items: big });
    expect(ok.status).to.equal(200);
    expect(count()).to.equal(1001);
    expect((await v.http.get('/v1/audit/verify').set(v.as('security'))).body.ok).to.equal(true);
  });
});

describe('access control through HTTP: every starter role × value action × data type', function () {
  this.timeout(30_000);
  let v: TestVault;
  before(async () => {
    v = await createTestVault();
  });
  after(() => v.close());

  const VALUES: Record<string, string> = {
    pan: '4111111111111111',
    ssn: '123-45-6789',
    email: 'jane@example.com',
    phone: '+14155552671',
    name: 'Jane Doe',
    dob: '1980-01-02',
    address: '1 Main St, Springfield',
    iban: 'GB82WEST12345698765432',
    text: 'hello',
  };
  const ROLES = ['billing', 'gateway', 'support', 'security'] as const;

  /** The starter policy, as the README states it. */
  function expected(role: (typeof ROLES)[number], action: string, type: string): 'allow' | 'deny' {
    const grants: Record<string, (a: string, t: string) => boolean> = {
      billing: (a) => ['tokenize', 'read-metadata', 'delete'].includes(a),
      gateway: (a, t) => a === 'detokenize' && t === 'pan',
      support: (a) => a === 'detokenize' || a === 'read-metadata',
      security: (a) => a === 'read-metadata',
    };
    return grants[role](action, type) ? 'allow' : 'deny';
  }

  for (const type of Object.keys(VALUES)) {
    it(`${type}: tokenize, detokenize (purpose charge), read-metadata and delete decide as the starter policy says`, async () => {
      for (const role of ROLES) {
        const tok = await v.http
          .post('/v1/tokenize')
          .set(v.as(role))
          .send({ items: [{ type, value: VALUES[type] }] });
        expect(tok.status === 200 ? 'allow' : 'deny', `${role} tokenize ${type}`).to.equal(expected(role, 'tokenize', type));
        if (tok.status !== 200) expect(tok.status).to.equal(403);

        const [fresh] = await v.tokenize([{ type, value: VALUES[type] }]);
        const det = await v.http
          .post('/v1/detokenize')
          .set(v.as(role))
          .send({ tokens: [fresh], purpose: 'charge' });
        const detAllowed = det.status === 200 && typeof det.body.items[0].value === 'string';
        expect(detAllowed ? 'allow' : 'deny', `${role} detokenize ${type}`).to.equal(expected(role, 'detokenize', type));

        const meta = await v.http.get(`/v1/tokens/${fresh}`).set(v.as(role));
        expect(meta.status === 200 ? 'allow' : 'deny', `${role} read-metadata ${type}`).to.equal(expected(role, 'read-metadata', type));

        const del = await v.http.delete(`/v1/tokens/${fresh}`).set(v.as(role));
        expect(del.status === 204 ? 'allow' : 'deny', `${role} delete ${type}`).to.equal(expected(role, 'delete', type));
      }
    });
  }
});

describe('mass assignment: extra fields in any body are refused and change nothing', () => {
  let v: TestVault;
  before(async () => {
    v = await createTestVault();
    await v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type: 'text', value: 'x' }] });
  });
  after(() => v.close());

  const state = () => ({
    tokens: v.opened.store.db.prepare('SELECT token, key_version, tenant FROM tokens ORDER BY token').all(),
    keys: v.opened.store.db.prepare('SELECT tenant, purpose, version, state, kek_id FROM data_keys ORDER BY 1, 2, 3').all(),
    jobs: v.opened.store.db.prepare('SELECT id FROM jobs').all(),
  });

  const BODIES: Array<[string, string, 'billing' | 'gateway' | 'security', object]> = [
    ['POST', '/v1/tokenize', 'billing', { items: [{ type: 'text', value: 'y' }] }],
    ['POST', '/v1/detokenize', 'gateway', { tokens: ['tok_x'], purpose: 'charge' }],
    ['POST', '/v1/keys/rotate', 'security', {}],
    ['POST', '/v1/keys/rewrap', 'security', {}],
    ['POST', '/v1/keys/reencrypt', 'security', {}],
    ['POST', '/v1/keys/1/retire', 'security', {}],
    ['POST', '/v1/keys/1/destroy', 'security', {}],
  ];
  const EXTRAS: Array<[string, string]> = [
    ['token', '"tok_mine"'],
    ['keyVersion', '7'],
    ['state', '"active"'],
    ['__proto__', '{"admin":true}'],
    ['constructor', '{"prototype":{"admin":true}}'],
    ['principal', '"security"'],
  ];

  for (const [method, path, who, body] of BODIES) {
    it(`${method} ${path} refuses extra fields with 400 invalid_request`, async () => {
      const before = state();
      const extras: Array<[string, string]> = [...EXTRAS];
      // (detokenize takes `tenant` since token spaces became per tenant.)
      if (path === '/v1/keys/rewrap') extras.push(['tenant', '"other"']);
      for (const [field, json] of extras) {
        const raw = JSON.stringify(body).replace(/^\{/, `{"${field}":${json}${Object.keys(body).length ? ',' : ''}`);
        const res = await v.http.post(path).set(v.as(who)).set('Content-Type', 'application/json').send(raw);
        expect(res.status, `${path} ${field}: ${JSON.stringify(res.body)}`).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
        expect(res.body.error.message).to.match(/unknown field/);
      }
      expect(state()).to.deep.equal(before);
      expect(({} as Record<string, unknown>).admin).to.equal(undefined);
    });
  }
});
