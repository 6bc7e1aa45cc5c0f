import { expect } from 'chai';
import type { Response } from 'supertest';
import { createTestVault, TestVault } from '../helpers/test-vault';

/**
 * Fixed-path API routes are dispatched directly, without express's router (app.ts). express
 * matches paths case-insensitively and ignores a trailing slash, so `/v1/Tokenize/` reaches the
 * same route through express: both ways must answer alike, headers included.
 */
describe('direct dispatch of fixed-path routes answers exactly as express does', () => {
  let v: TestVault;
  let token: string;
  before(async () => {
    v = await createTestVault();
    [token] = await v.tokenize([{ type: 'pan', value: '4111111111111111' }]);
  });
  after(() => v.close());

  const VARYING = new Set(['date', 'x-request-id', 'content-length']);
  const shape = (res: Response) => ({
    status: res.status,
    code: res.body?.error?.code ?? null,
    headers: Object.fromEntries(Object.entries(res.headers).filter(([name]) => !VARYING.has(name))),
    bodyKeys: Object.keys(res.body ?? {}).sort(),
  });

  const cases: Array<[string, string, (t: TestVault) => Record<string, string>, () => unknown, string?]> = [
    ['tokenize', '/v1/tokenize', (t) => t.as('billing'), () => ({ items: [{ type: 'email', value: 'a@example.com' }] })],
    ['detokenize', '/v1/detokenize', (t) => t.as('gateway'), () => ({ tokens: [token], purpose: 'charge' })],
    ['no API key', '/v1/tokenize', () => ({}), () => ({ items: [] })],
    ['invalid body', '/v1/tokenize', (t) => t.as('billing'), () => ({ items: [{ type: 'pan', value: '4111111111111112' }] })],
    ['unknown field', '/v1/detokenize', (t) => t.as('gateway'), () => ({ tokens: [token], purpose: 'charge', tenant: 'x' })],
    [
      'sensitive authentication data',
      '/v1/tokenize',
      (t) => t.as('billing'),
      () => ({ items: [{ type: 'pan', value: '4111111111111111' }], cvv: '123' }),
    ],
    ['forbidden', '/v1/detokenize', (t) => t.as('billing'), () => ({ tokens: [token], purpose: 'charge' })],
    ['malformed JSON', '/v1/tokenize', (t) => t.as('billing'), () => '{"items": [', 'application/json'],
    ['wrong media type', '/v1/tokenize', (t) => t.as('billing'), () => 'items=1', 'application/x-www-form-urlencoded'],
  ];

  const viaExpress = (path: string) => `${path.replace(/^\/v1\/(.)/, (_, c: string) => `/v1/${c.toUpperCase()}`)}/`;
  for (const [name, path, auth, body, type] of cases) {
    it(`${name}: ${path} and ${viaExpress(path)} give the same status, code, headers and body shape`, async () => {
      const send = (p: string) => {
        const req = v.http.post(p).set(auth(v));
        return type ? req.set('Content-Type', type).send(body() as string) : req.send(body() as object);
      };
      const direct = await send(path);
      const routed = await send(viaExpress(path));
      expect(shape(direct)).to.deep.equal(shape(routed));
      expect(direct.headers['content-security-policy'], 'helmet headers').to.be.a('string');
      expect(direct.headers['cache-control']).to.equal('no-store');
    });
  }

  it('a query string does not stop direct dispatch, and other methods on those paths still get 405', async () => {
    const res = await v.http
      .post('/v1/tokenize?debug=1')
      .set(v.as('billing'))
      .send({ items: [{ type: 'email', value: 'b@example.com' }] });
    expect(res.status).to.equal(200);
    const get = await v.http.get('/v1/tokenize').set(v.as('billing'));
    expect(get.status).to.equal(405);
    expect(get.body.error.code).to.equal('method_not_allowed');
  });
});
