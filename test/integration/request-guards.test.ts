import { Writable } from 'node:stream';
import { expect } from 'chai';
import supertest from 'supertest';
import type { TokenizeRequest } from '../../src/contract/schemas';
import { VaultError } from '../../src/errors';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import type { Caller } from '../../src/service/context';
import { createTestVault, TestVault } from '../helpers/test-vault';

/**
 * What the vault refuses in a request — sensitive authentication data, card numbers in clear
 * metadata, ill-formed Unicode — both over HTTP and when the use case is called directly, and
 * what it never echoes: values, metadata keys, a caller's request id of an unsafe shape.
 */
describe('request guards', () => {
  let v: TestVault;
  let billing: Caller;
  before(async () => {
    v = await createTestVault();
    billing = { principal: v.opened.vault.authenticate(v.keys.billing)!, requestId: 'guards-test' };
  });
  after(() => v.close());

  const countTokens = () => (v.opened.store.db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;
  const post = (body: object | string) =>
    v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .set('Content-Type', 'application/json')
      .send(typeof body === 'string' ? body : JSON.stringify(body));
  /** The use case, called as the CLI or any other in-process caller would: no HTTP middleware. */
  const useCase = async (request: object): Promise<VaultError | undefined> => {
    try {
      await v.opened.vault.tokenize(billing, request as TokenizeRequest);
      return undefined;
    } catch (err) {
      if (err instanceof VaultError) return err;
      throw err;
    }
  };
  const item = (extra: object) => ({ items: [{ type: 'text', value: 'x', ...extra }] });
  const withMetadata = (metadata: Record<string, unknown>) => item({ metadata });

  describe('sensitive authentication data (matched by meaning, after folding)', () => {
    const refused: Array<[string, object, RegExp[]]> = [
      ['card_cvv in metadata', withMetadata({ card_cvv: '123' }), [/card_cvv/, /123/]],
      ['cvv_code in metadata', withMetadata({ cvv_code: '123' }), [/cvv_code/]],
      ['card.cvv in metadata', withMetadata({ 'card.cvv': '123' }), [/card\.cvv/]],
      ['cardCVV in metadata', withMetadata({ cardCVV: 123 }), [/cardCVV/]],
      ['CVVCode in metadata', withMetadata({ CVVCode: '123' }), [/CVVCode/]],
      ['cvc2 in metadata', withMetadata({ cvc2: '123' }), [/cvc2/]],
      ['securityCode in metadata', withMetadata({ securityCode: '123' }), [/securityCode/]],
      ['card_security_code in metadata', withMetadata({ card_security_code: '123' }), [/card_security_code/]],
      ['cardCode (Authorize.Net) in metadata', withMetadata({ cardCode: '123' }), [/cardCode/]],
      ['cid in metadata', withMetadata({ amex_cid: '1234' }), [/amex_cid/, /1234/]],
      ['pin_code in metadata', withMetadata({ pin_code: '1234' }), [/pin_code/, /1234/]],
      ['PINBlock in metadata', withMetadata({ PINBlock: '0412AC89ABCDEF67' }), [/PINBlock/, /0412AC89/]],
      ['track2 in metadata', withMetadata({ track2: 'x' }), [/track2/]],
      ['mag_stripe in metadata', withMetadata({ mag_stripe: 'x' }), [/mag_stripe/]],
      ['a full-width ｃｖｖ as an item field', item({ ｃｖｖ: '123' }), [/ｃｖｖ/]],
      ['a cvv with a zero-width space as a top-level field', { 'c\u200bvv': '123', items: [{ type: 'text', value: 'x' }] }, [/vv/]],
      ['a nested cvv object', withMetadata({ cvv: { value: '123' } }), [/123/]],
      ['card_cvv as a data type', { items: [{ type: 'card_cvv', value: '123' }] }, [/card_cvv/]],
      ['track 2 data in text', item({ value: ';4111111111111111=25121011000012345678?' }), [/4111/]],
      ['EMV track-2 equivalent data (D separator)', item({ value: '4111111111111111D25121011000012345678F' }), [/4111/]],
      ['EMV track-2 equivalent data with a sentinel', item({ value: ';4111111111111111D2512101?' }), [/4111/]],
      ['track-2 equivalent data in lower case', item({ value: 'card 4111111111111111d2512101123' }), [/4111/]],
      ['track 1 data in lower case', item({ value: '%b4111111111111111^doe/jane^2512101100000000?' }), [/4111/, /doe/]],
      ['track 1 data without sentinels', item({ value: 'B4111111111111111^DOE/JANE^25121011' }), [/4111/, /DOE/]],
      ['track 2 data with full-width digits', item({ value: ';４１１１１１１１１１１１１１１１=2512101?' }), [/４１１１/]],
      ['track 2 data with zero-width characters', item({ value: ';4111\u200b1111\u200b1111\u200b1111=2512101?' }), [/4111/]],
      ['track 2 data with spaced groups', item({ value: '4111 1111 1111 1111=2512101' }), [/4111/]],
      ['track data in a metadata value', withMetadata({ note: '4111111111111111D2512101' }), [/note/, /4111/]],
      ['CV2 (Opayo) in metadata', withMetadata({ CV2: '123' }), [/CV2/]],
      ['ccv in metadata', withMetadata({ ccv: '123' }), [/ccv/]],
      ['card_security_number in metadata', withMetadata({ card_security_number: '123' }), [/card_security_number/]],
      ['cardVerificationCode in metadata', withMetadata({ cardVerificationCode: '123' }), [/cardVerificationCode/]],
      ['EMV tag 57 in TLV hex (digits run on before the PAN)', item({ value: '57134111111111111111D25122010000000000000F' }), [/4111/]],
      ['track 2 with spaces around the separator', item({ value: '4111111111111111 = 2512101' }), [/4111/]],
      ['track 2 in mathematical bold digits', item({ value: ';𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏=𝟐𝟓𝟏𝟐𝟏𝟎𝟏?' }), [/𝟒𝟏𝟏𝟏/]],
    ];
    for (const [what, body, leaks] of refused) {
      it(`refuses ${what} over HTTP and in the use case, naming no key and no value`, async () => {
        const before = countTokens();
        const res = await post(body);
        expect(res.status, JSON.stringify(res.body)).to.equal(400);
        expect(res.body.error.code).to.equal('sensitive_authentication_data');
        for (const leak of leaks) expect(res.body.error.message).not.to.match(leak);
        const direct = await useCase(body);
        expect(direct?.code, 'the use case refuses it too').to.equal('sensitive_authentication_data');
        for (const leak of leaks) expect(direct!.message).not.to.match(leak);
        expect(countTokens()).to.equal(before);
      });
    }

    it('names where it found it, up to the metadata object', async () => {
      const res = await post({
        items: [
          { type: 'text', value: 'x' },
          { type: 'text', value: 'y', metadata: { order: 'a', card_cvv: '1' } },
        ],
      });
      expect(res.body.error.message).to.match(/^Refused: items\[1\]\.metadata holds a card verification code\./);
      expect(res.body.error.message).not.to.match(/order|card_cvv/);
      expect(res.body.error.details).to.deep.equal({ index: 1 });
    });

    const accepted: Array<[string, object]> = [
      ['pinned, spinner, description and opinion', withMetadata({ pinned: true, spinner: 'a', description: 'b', opinion: 'c' })],
      ['tracking numbers and Stripe ids', withMetadata({ tracking_number: 'A1', stripe_customer: 'cus_x', shipping_track_id: 'z' })],
      ['postal and verification words', withMetadata({ postcode: 'NW1', email_verification_code_sent: true, security_question: 'q' })],
      ['a cvv flag with true, false or null', withMetadata({ cvv_present: false, cvv_checked: true, pin_verified: null })],
      ['words that contain cid or pin', withMetadata({ incident: 'i', decided: 'd', pinyin: 'p', shopping: 's' })],
      ['digits around an equals sign that are no card', item({ value: 'ratio 123456789012=1234 and 4111111111111112=2512' })],
      ['a caret-separated text without a card number', item({ value: 'B1234^DOE/JANE^2512' })],
      ['a text with a D that is no track data', item({ value: 'ticket 12345D2024, room 4D' })],
    ];
    for (const [what, body] of accepted) {
      it(`accepts ${what}`, async () => {
        const res = await post(body);
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
      });
    }
  });

  describe('card numbers in clear metadata', () => {
    const refused: Array<[string, Record<string, unknown>]> = [
      ['written with dots', { note: '4111.1111.1111.1111' }],
      ['with zero-width characters', { note: '4111\u200b1111\u200c1111\u2060111\ufeff1' }],
      ['in full-width digits', { note: '４１１１１１１１１１１１１１１１' }],
      ['in Arabic-Indic digits', { note: '٤١١١١١١١١١١١١١١١' }],
      ['in mathematical bold digits (outside the BMP)', { note: '𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏' }],
      [
        'in Osmanya digits (outside the BMP)',
        {
          note: '\u{104A4}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}\u{104A1}',
        },
      ],
      ['half ASCII, half bold digits', { note: '41111111𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏' }],
      ['followed by extra digits', { note: '411111111111111199' }],
      ['followed by extra digits after a space', { note: '4111 1111 1111 1111 7' }],
      ['preceded by other digits', { ref: '0004111111111111111' }],
      ['with underscores and soft hyphens', { note: '4111_1111\u00ad1111_1111' }],
      ['as a JSON number', { n: 4111111111111111 }],
      ['in a key', { k4111_1111_1111_1111: true }],
    ];
    for (const [what, metadata] of refused) {
      it(`refuses one ${what}, over HTTP and in the use case`, async () => {
        const res = await post(withMetadata(metadata));
        expect(res.status, JSON.stringify(res.body)).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
        expect(res.body.error.message)
          .to.include('items[0].metadata')
          .and.not.match(/4111|k4111|note|ref/);
        expect((await useCase(withMetadata(metadata)))?.code).to.equal('invalid_request');
      });
    }

    it('accepts short numbers, dates, amounts and versions', async () => {
      const metadata = { plan: 3, at: '2024-01-15T10:30:00Z', amount: '1,234,567.89', version: '1.2.3', zip: '94103-1234', last4: '4242' };
      expect((await post(withMetadata(metadata))).status).to.equal(200);
    });
  });

  describe('lone UTF-16 surrogates', () => {
    const raw = (json: string) => post(json);
    const cases: Array<[string, string, string]> = [
      ['an item value', '{"items":[{"type":"text","value":"a\\ud800"}]}', 'invalid_value'],
      ['an item value (low surrogate)', '{"items":[{"type":"name","value":"Jane \\udc00Doe"}]}', 'invalid_value'],
      ['a subject', '{"items":[{"type":"text","value":"a","subject":"cust\\ud800"}]}', 'invalid_request'],
      ['a metadata value', '{"items":[{"type":"text","value":"a","metadata":{"note":"x\\ud800"}}]}', 'invalid_request'],
      ['a metadata key', '{"items":[{"type":"text","value":"a","metadata":{"n\\ud800":"x"}}]}', 'invalid_request'],
      ['a tenant', '{"tenant":"\\ud800","items":[{"type":"text","value":"a"}]}', 'invalid_request'],
    ];
    for (const [what, body, code] of cases) {
      it(`refuses one in ${what} with 400 ${code}`, async () => {
        const before = countTokens();
        const res = await raw(body);
        expect(res.status, JSON.stringify(res.body)).to.equal(400);
        expect(res.body.error.code).to.equal(code);
        expect(res.body.error.message).to.match(/well-formed Unicode/);
        expect(countTokens()).to.equal(before);
      });
    }

    it('refuses one in a detokenize token', async () => {
      const res = await v.http
        .post('/v1/detokenize')
        .set(v.as('support'))
        .set('Content-Type', 'application/json')
        .send('{"tokens":["tok_\\ud800"]}');
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('invalid_request');
    });

    it('refuses them in the use case too: distinct inputs never share a deterministic token', async () => {
      for (const [value, extra] of [
        ['a\ud800', {}],
        ['a', { subject: 'cust\ud800' }],
        ['a', { metadata: { note: '\udfff' } }],
      ] as const) {
        const err = await useCase({ items: [{ type: 'text', value, deterministic: true, ...extra }] });
        expect(err?.code, JSON.stringify(extra)).to.be.oneOf(['invalid_value', 'invalid_request']);
      }
      const [a, b] = [
        await useCase(item({ value: 'x\ud800', deterministic: true })),
        await useCase(item({ value: 'x\ud801', deterministic: true })),
      ];
      expect([a?.code, b?.code]).to.deep.equal(['invalid_value', 'invalid_value']);
    });

    it('accepts paired surrogates (emoji), and tells two of them apart', async () => {
      const tokens = await v.tokenize([
        { type: 'text', value: 'hi \ud83d\ude00', deterministic: true },
        { type: 'text', value: 'hi \ud83d\ude01', deterministic: true },
      ]);
      expect(new Set(tokens).size).to.equal(2);
    });
  });

  describe('invalid UTF-8 and caller-chosen names that could carry a card number', () => {
    it('refuses a body that is not valid UTF-8 (an encoded lone surrogate, a stray byte) instead of decoding it to U+FFFD', async () => {
      for (const bad of [Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff, 0xff])]) {
        const body = Buffer.concat([Buffer.from('{"items":[{"type":"text","deterministic":true,"value":"a'), bad, Buffer.from('b"}]}')]);
        const res = await v.http
          .post('/v1/tokenize')
          .set(v.as('billing'))
          .set('Content-Type', 'application/json')
          .serialize((raw: unknown) => raw as string) // the bytes as they are, not JSON of a Buffer
          .send(body);
        expect(res.status, JSON.stringify(res.body)).to.equal(400);
        expect(res.body.error.code).to.equal('malformed_json');
      }
    });

    it('refuses a tenant or a purpose holding a run of 12 digits, so neither reaches a message or an audit row', async () => {
      const pan = '4111111111111111';
      const tenant = await post({ tenant: pan, items: [{ type: 'text', value: 'x' }] });
      expect(tenant.status).to.equal(400);
      expect(JSON.stringify(tenant.body)).not.to.contain(pan);
      const purpose = await v.http
        .post('/v1/detokenize')
        .set(v.as('gateway'))
        .send({ tokens: ['tok_x'], purpose: pan });
      expect(purpose.status).to.equal(400);
      expect(JSON.stringify(purpose.body)).not.to.contain(pan);
      const rows = await v.opened.store.auditRows(0, 1_000_000);
      expect(JSON.stringify(rows)).not.to.contain(pan);
    });
  });

  describe('error messages never echo submitted key names', () => {
    const keyed: Array<[string, object, string, number | undefined]> = [
      ['a metadata key outside the key pattern', withMetadata({ 'jane.doe@example.com': 'x' }), 'jane.doe@example.com', 0],
      ['a nested object under a PII-shaped key', withMetadata({ jane_doe_1980_02_29: { a: 1 } }), 'jane_doe_1980_02_29', 0],
      ['a too long value under a PII-shaped key', withMetadata({ zebulon_canarywood: 'x'.repeat(300) }), 'zebulon_canarywood', 0],
      ['an array under a PII-shaped key', withMetadata({ ssn_123_45_6789: [1] }), 'ssn_123_45_6789', 0],
      ['an unknown item field', item({ zebulon_canarywood: 1 }), 'zebulon_canarywood', 0],
      ['an unknown top-level field', { items: [{ type: 'text', value: 'x' }], jane_doe: 1 }, 'jane_doe', undefined],
    ];
    for (const [what, body, key, index] of keyed) {
      it(`rejects ${what} without naming it`, async () => {
        const res = await post(body);
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('invalid_request');
        expect(JSON.stringify(res.body.error)).not.to.include(key);
        expect(res.body.error.details.index, 'the item index is still given').to.equal(index);
      });
    }

    it('still says which declared field and which rule', async () => {
      const res = await post(withMetadata({ zebulon_canarywood: 'x'.repeat(300) }));
      expect(res.body.error.message).to.match(/^body\/items\/0\/metadata: /);
      expect(res.body.error.details.path).to.equal('/items/0/metadata');
      const unknown = await post(item({ zebulon_canarywood: 1 }));
      expect(unknown.body.error.message).to.match(/^body\/items\/0: unknown field \(allowed: type, value/);
    });

    it('rejects an unknown query parameter without naming it', async () => {
      const res = await v.http.get('/v1/audit?jane_doe_1980=1').set(v.as('security'));
      expect(res.status).to.equal(400);
      expect(JSON.stringify(res.body.error)).not.to.include('jane_doe');
    });
  });

  describe('X-Request-Id', () => {
    const lastAuditRow = async () => (await v.opened.store.auditRows(0, 1_000_000)).at(-1)!;

    const accepted = [
      'abc-123',
      'req_01HZX3K9QW',
      '3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b',
      'A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D',
      'trace-12345-x',
    ];
    for (const id of accepted) {
      it(`echoes and audits a caller id of a safe shape: ${id}`, async () => {
        const res = await post({ items: [{ type: 'text', value: 'x' }] }).set('X-Request-Id', id);
        expect(res.status).to.equal(200);
        expect(res.headers['x-request-id']).to.equal(id);
        expect((await lastAuditRow()).requestId).to.equal(id);
      });
    }

    const replaced = [
      '4111111111111111',
      '4111-1111-1111-1111',
      '4111_1111_1111_1111',
      'order-123456',
      'jane.doe@example.com',
      'Jane Doe',
      '123-45-6789',
      '1980-02-29',
      '+14155552671',
      'x'.repeat(65),
      'a:b',
      '41111111-1111-4111-9111-111111111111', // UUID-shaped, but its digits are a card number
    ];
    for (const id of replaced) {
      it(`replaces a caller id that could carry personal data: ${id.slice(0, 24)}`, async () => {
        const res = await post({ items: [{ type: 'text', value: 'x' }] }).set('X-Request-Id', id);
        expect(res.status).to.equal(200);
        const given = res.headers['x-request-id'];
        expect(given).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect((await lastAuditRow()).requestId, 'the audit row files the same id').to.equal(given);
        const refused = await v.http.get('/v1/tokens/tok_nope').set(v.as('security')).set('X-Request-Id', id);
        expect(refused.body.error.requestId).to.equal(refused.headers['x-request-id']).and.not.equal(id);
      });
    }

    it('keeps a replaced id out of the logs, which carry the generated one', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      });
      const http = supertest(createApp({ vault: v.opened.vault, logger: createLogger('info', sink) }));
      const res = await http
        .post('/v1/tokenize')
        .set(v.as('billing'))
        .set('X-Request-Id', '4111-1111-1111-1111')
        .send({ items: [{ type: 'text', value: 'x' }] });
      const log = lines.join('');
      expect(log).to.include(res.headers['x-request-id']);
      expect(log).not.to.include('4111');
    });
  });
});
