import { expect } from 'chai';
import { Value } from '@sinclair/typebox/value';
import { DetokenizeRequestSchema, TokenizeRequestSchema } from '../../src/contract/schemas';
import { API_ROUTES } from '../../src/http/routes';
import { createTestVault, TestVault } from '../helpers/test-vault';

describe('HTTP edge: authentication, bad input, errors', () => {
  let v: TestVault;
  before(async () => {
    v = await createTestVault();
  });
  after(() => v.close());

  const expectError = (
    res: { status: number; body: { error?: { code: string; message: string; requestId: string } } },
    status: number,
    code: string,
  ) => {
    expect(res.status, JSON.stringify(res.body)).to.equal(status);
    expect(res.body.error).to.include({ code });
    expect(res.body.error!.message).to.be.a('string').with.length.greaterThan(0);
    expect(res.body.error!.requestId).to.be.a('string').with.length.greaterThan(0);
    expect(JSON.stringify(res.body)).not.to.match(/\bat .*\.js:\d+/);
  };

  describe('every /v1 route requires a valid API key', () => {
    for (const route of API_ROUTES) {
      const path = route.path.replace(':token', 'tok_abc');
      it(`${route.method.toUpperCase()} ${route.path}: 401 without a key, with a forged key and with another scheme`, async () => {
        const variants = [
          {},
          { Authorization: 'Bearer pvk_forgedforgedforgedforgedforgedforgedforge' },
          { Authorization: `Basic ${v.keys.billing}` },
        ];
        for (const headers of variants) {
          const res = await v.http[route.method](path)
            .set(headers)
            .send(route.body ? { items: [] } : undefined);
          expectError(res, 401, 'unauthorized');
          expect(res.headers['www-authenticate']).to.match(/^Bearer/);
        }
      });
    }
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    expectError(await v.http.get('/v1/nothing').set(v.as('billing')), 404, 'not_found');
    expectError(await v.http.put('/v1/tokenize').set(v.as('billing')), 405, 'method_not_allowed');
  });

  const post = (body: string | object, contentType = 'application/json') =>
    v.http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .set('Content-Type', contentType)
      .send(typeof body === 'string' ? body : JSON.stringify(body));

  it('rejects malformed JSON with malformed_json', async () => {
    expectError(await post('{"items": ['), 400, 'malformed_json');
    expectError(await post('"just a string"'), 400, 'malformed_json');
  });

  it('rejects other content types with 415', async () => {
    expectError(await post('items=1', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
    expectError(await post('{}', 'text/plain'), 415, 'unsupported_media_type');
  });

  it('rejects bodies over 1 MiB with 413', async () => {
    const big = JSON.stringify({ items: [{ type: 'text', value: 'x'.repeat(1024 * 1024) }] });
    expectError(await post(big), 413, 'payload_too_large');
  });

  const invalid: Array<[string, object, string]> = [
    ['a missing items list', {}, 'invalid_request'],
    ['an empty items list', { items: [] }, 'invalid_request'],
    ['an unknown data type', { items: [{ type: 'passport', value: '123' }] }, 'invalid_request'],
    ['an unknown format', { items: [{ type: 'pan', value: '4111111111111111', format: 'fancy' }] }, 'invalid_request'],
    ['a number as value', { items: [{ type: 'pan', value: 4111111111111111 }] }, 'invalid_request'],
    ['an object as value', { items: [{ type: 'pan', value: { v: '4111111111111111' } }] }, 'invalid_request'],
    ['a value over 4096 characters', { items: [{ type: 'text', value: 'y'.repeat(4097) }] }, 'invalid_request'],
    ['an unknown item field', { items: [{ type: 'pan', value: '4111111111111111', keyVersion: 2 }] }, 'invalid_request'],
    ['an unknown top-level field', { items: [{ type: 'pan', value: '4111111111111111' }], token: 'tok_mine' }, 'invalid_request'],
    ['a bad tenant id', { tenant: '_system', items: [{ type: 'text', value: 'x' }] }, 'invalid_request'],
    ['a negative ttl', { items: [{ type: 'text', value: 'x', ttlSeconds: -1 }] }, 'invalid_request'],
    ['nested metadata', { items: [{ type: 'text', value: 'x', metadata: { a: { b: 1 } } }] }, 'invalid_request'],
    [
      'a metadata key outside the key pattern',
      { items: [{ type: 'text', value: 'x', metadata: { 'customer record': 'y' } }] },
      'invalid_request',
    ],
    [
      'a card number in a metadata value',
      { items: [{ type: 'text', value: 'x', metadata: { note: 'card 4111-1111-1111-1111' } }] },
      'invalid_request',
    ],
    [
      'a card number as a metadata key',
      { items: [{ type: 'text', value: 'x', metadata: { k4111111111111111: true } }] },
      'invalid_request',
    ],
    ['an invalid SSN', { items: [{ type: 'ssn', value: '666-12-3456' }] }, 'invalid_value'],
    ['an invalid IBAN', { items: [{ type: 'iban', value: 'GB82WEST12345698765433' }] }, 'invalid_value'],
    ['a future date of birth', { items: [{ type: 'dob', value: '2999-01-01' }] }, 'invalid_value'],
  ];
  for (const [what, body, code] of invalid) {
    it(`rejects ${what} with 400 ${code}, echoing no value`, async () => {
      const res = await post(body);
      expectError(res, 400, code);
      expect(res.body.error.message).not.to.match(/4111|customer record|666-12|GB82|2999/);
    });
  }

  it('rejects __proto__ and constructor keys instead of merging them', async () => {
    const res = await post('{"items":[{"type":"text","value":"x","__proto__":{"admin":true}}]}');
    expectError(res, 400, 'invalid_request');
    expect(res.body.error.details).to.deep.include({ index: 0 });
    expectError(await post('{"items":[{"type":"text","value":"x"}],"constructor":{"prototype":{}}}'), 400, 'invalid_request');
    expect(({} as Record<string, unknown>).admin).to.equal(undefined);
  });

  it('validates detokenize bodies and audit queries the same way', async () => {
    const detok = (body: object) => v.http.post('/v1/detokenize').set(v.as('support')).send(body);
    expectError(await detok({}), 400, 'invalid_request');
    expectError(await detok({ tokens: [1] }), 400, 'invalid_request');
    expectError(await detok({ tokens: ['tok_a'], reveal: 'everything' }), 400, 'invalid_request');
    expectError(await detok({ tokens: Array.from({ length: 1001 }, (_, i) => `t${i}`) }), 400, 'too_many_items');
    expectError(await v.http.get('/v1/audit?limit=abc').set(v.as('security')), 400, 'invalid_request');
    expectError(await v.http.get('/v1/audit?limit=5000').set(v.as('security')), 400, 'invalid_request');
    expectError(await v.http.get('/v1/audit?evil=1').set(v.as('security')), 400, 'invalid_request');
  });

  it('echoes a safe X-Request-Id and replaces an unsafe one', async () => {
    const safe = await v.http.get('/v1/tokens/tok_x').set(v.as('security')).set('X-Request-Id', 'abc-123');
    expect(safe.headers['x-request-id']).to.equal('abc-123');
    expect(safe.body.error.requestId).to.equal('abc-123');
    const unsafe = await v.http.get('/v1/tokens/tok_x').set(v.as('security')).set('X-Request-Id', 'a b<script>');
    expect(unsafe.headers['x-request-id']).to.match(/^[0-9a-f-]{36}$/);
  });

  it('sets helmet security headers and no-store caching', async () => {
    const res = await v.http.get('/healthz');
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ status: 'ok' });
    expect(res.headers['x-content-type-options']).to.equal('nosniff');
    expect(res.headers['cache-control']).to.equal('no-store');
    expect(res.headers['x-powered-by']).to.equal(undefined);
  });

  it('reports readiness of the database and keys', async () => {
    const res = await v.http.get('/readyz');
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ status: 'ready', checks: { database: 'ok', keys: 'ok', keyProvider: 'ok' } });
  });

  it('serves an OpenAPI 3.1 document generated from the same schemas that validate requests', async () => {
    const res = await v.http.get('/openapi.json');
    expect(res.status).to.equal(200);
    expect(res.body.openapi).to.equal('3.1.0');
    for (const route of API_ROUTES) {
      const path = route.path.replace(/:(\w+)/g, '{$1}');
      expect(res.body.paths[path][route.method].operationId).to.equal(route.operationId);
    }
    const schemaOf = (p: string) => res.body.paths[p].post.requestBody.content['application/json'].schema;
    expect(schemaOf('/v1/tokenize')).to.deep.equal(JSON.parse(JSON.stringify(TokenizeRequestSchema)));
    expect(schemaOf('/v1/detokenize')).to.deep.equal(JSON.parse(JSON.stringify(DetokenizeRequestSchema)));
    // The published schema accepts what the API accepts and refuses what it refuses.
    expect(Value.Check(TokenizeRequestSchema, { items: [{ type: 'pan', value: '4111111111111111' }] })).to.equal(true);
    expect(Value.Check(TokenizeRequestSchema, { items: [{ type: 'pan', value: '4111111111111111', extra: 1 }] })).to.equal(false);
  });
});
