import { expect } from 'chai';
import { luhnValid } from '../../src/domain/data-types';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('POST /v1/tokenize', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  const tokenize = (items: object[], extra: object = {}, who: 'billing' | 'gateway' | 'support' | 'security' = 'billing') =>
    v.http
      .post('/v1/tokenize')
      .set(v.as(who))
      .send({ items, ...extra });
  const countTokens = () => (v.opened.store.db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;

  it('returns one token per item, in request order, with its type', async () => {
    const res = await tokenize([
      { type: 'pan', value: '4111 1111 1111 1111' },
      { type: 'email', value: 'jane@example.com' },
      { type: 'ssn', value: '123-45-6789' },
      { type: 'phone', value: '+1 415 555 2671' },
      { type: 'name', value: 'Jane Doe' },
      { type: 'dob', value: '1980-02-29' },
      { type: 'address', value: '1 Main St, Springfield' },
      { type: 'iban', value: 'GB82 WEST 1234 5698 7654 32' },
      { type: 'text', value: 'free text' },
    ]);
    expect(res.status).to.equal(200);
    expect(res.body.items.map((i: { type: string }) => i.type)).to.deep.equal([
      'pan',
      'email',
      'ssn',
      'phone',
      'name',
      'dob',
      'address',
      'iban',
      'text',
    ]);
    expect(new Set(res.body.items.map((i: { token: string }) => i.token)).size).to.equal(9);
    expect(countTokens()).to.equal(9);
  });

  it('gives PANs a same-length, last-4-keeping token that fails Luhn by default', async () => {
    const res = await tokenize([{ type: 'pan', value: '4242-4242-4242-4242' }]);
    const token: string = res.body.items[0].token;
    expect(token).to.match(/^\d{16}$/);
    expect(token.endsWith('4242')).to.equal(true);
    expect(luhnValid(token)).to.equal(false);
  });

  it('keeps BIN and last 4 when asked, and offers random, uuid and email formats', async () => {
    // An SSN keeping its last 4 has 5 random digits: below the default minimum, so billing opts in.
    v.opened.vault.deps.policy().roles.billing[0].allowNarrowTokens = true;
    const res = await tokenize([
      { type: 'pan', value: '4111111111111111', format: 'pan', preserve: 'bin6last4' },
      { type: 'pan', value: '4111111111111111', format: 'random' },
      { type: 'email', value: 'jane@example.com', format: 'uuid' },
      { type: 'email', value: 'jane@Example.com', format: 'email', preserve: 'domain' },
      { type: 'ssn', value: '123456789', format: 'digits', preserve: 'last4' },
    ]);
    expect(res.status).to.equal(200);
    const [bin, random, uuid, email, ssn] = res.body.items.map((i: { token: string }) => i.token);
    expect(bin).to.match(/^411111\d{6}1111$/);
    expect(random).to.match(/^tok_[0-9A-Za-z]{30}$/);
    expect(uuid).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(email).to.match(/^[a-z2-7]{20}@example\.com$/);
    expect(ssn).to.match(/^\d{5}6789$/);
  });

  it('rejects a format that does not fit the type with unsupported_format and the item index', async () => {
    const res = await tokenize([
      { type: 'name', value: 'Jane' },
      { type: 'email', value: 'a@b.co', format: 'pan' },
    ]);
    expect(res.status).to.equal(400);
    expect(res.body.error.code).to.equal('unsupported_format');
    expect(res.body.error.details.index).to.equal(1);
  });

  it('is atomic: one invalid item stores nothing and names its index, never its value', async () => {
    const res = await tokenize([
      { type: 'pan', value: '4111111111111111' },
      { type: 'pan', value: '4111111111111112' },
    ]);
    expect(res.status).to.equal(400);
    expect(res.body.error.code).to.equal('invalid_value');
    expect(res.body.error.details).to.deep.include({ index: 1, type: 'pan' });
    expect(JSON.stringify(res.body)).not.to.contain('4111111111111112');
    expect(countTokens()).to.equal(0);
  });

  it('accepts 1,000 items and refuses 1,001 with too_many_items', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ type: 'text', value: `v${i}` }));
    const ok = await tokenize(items);
    expect(ok.status).to.equal(200);
    expect(ok.body.items).to.have.length(1000);
    const tooMany = await tokenize([...items, { type: 'text', value: 'one more' }]);
    expect(tooMany.status).to.equal(400);
    expect(tooMany.body.error.code).to.equal('too_many_items');
  });

  describe('deterministic tokenization', () => {
    it('gives the same token for the same tenant, type and normalised value', async () => {
      const a = await tokenize([{ type: 'pan', value: '4111 1111 1111 1111', deterministic: true }]);
      const b = await tokenize([{ type: 'pan', value: '4111-1111-1111-1111', deterministic: true }]);
      expect(a.body.items[0].token).to.equal(b.body.items[0].token);
      expect(countTokens()).to.equal(1);
    });

    it('gives one token for duplicates inside one batch', async () => {
      const res = await tokenize([
        { type: 'email', value: 'jane@EXAMPLE.com', deterministic: true },
        { type: 'email', value: 'jane@example.com', deterministic: true },
      ]);
      expect(res.body.items[0].token).to.equal(res.body.items[1].token);
    });

    it('returns one token under concurrent first requests', async () => {
      const responses = await Promise.all(
        Array.from({ length: 25 }, () => tokenize([{ type: 'ssn', value: '123-45-6789', deterministic: true }])),
      );
      const tokens = new Set(responses.map((r) => r.body.items[0].token));
      expect(responses.every((r) => r.status === 200)).to.equal(true);
      expect(tokens.size).to.equal(1);
      expect(countTokens()).to.equal(1);
    });

    it('never shares a token across tenants or types', async () => {
      v.opened.vault.deps.policy().principals.billing.tenants = ['default', 'acme'];
      const a = await tokenize([{ type: 'text', value: '123456789', deterministic: true }]);
      const b = await tokenize([{ type: 'text', value: '123456789', deterministic: true }], { tenant: 'acme' });
      const c = await tokenize([{ type: 'ssn', value: '123456789', deterministic: true }]);
      expect(new Set([a.body.items[0].token, b.body.items[0].token, c.body.items[0].token]).size).to.equal(3);
    });
  });

  it('gives a new token each call for random tokenization', async () => {
    const a = await tokenize([{ type: 'pan', value: '4111111111111111' }]);
    const b = await tokenize([{ type: 'pan', value: '4111111111111111' }]);
    expect(a.body.items[0].token).not.to.equal(b.body.items[0].token);
  });

  it('refuses a tenant the caller is not granted, and a type its role may not tokenize', async () => {
    const tenant = await tokenize([{ type: 'pan', value: '4111111111111111' }], { tenant: 'acme' });
    expect(tenant.status).to.equal(403);
    expect(tenant.body.error.code).to.equal('forbidden');
    const gateway = await tokenize([{ type: 'pan', value: '4111111111111111' }], {}, 'gateway');
    expect(gateway.status).to.equal(403);
    expect(countTokens()).to.equal(0);
  });
});
