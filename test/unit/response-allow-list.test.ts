import { expect } from 'chai';
import { Type } from '@sinclair/typebox';
import { allowListed, UndeclaredResponseError } from '../../src/http/response-allow-list';

describe('response allow-list', () => {
  const Item = Type.Object({ token: Type.String(), note: Type.Optional(Type.Union([Type.String(), Type.Null()])) });
  const Failed = Type.Object({ token: Type.String(), error: Type.Object({ code: Type.Literal('not_found') }) });
  const Labels = Type.Record(Type.String({ pattern: '^[a-z_]+$' }), Type.Union([Type.String(), Type.Number()]), {
    additionalProperties: false,
  });
  const Page = Type.Object({ items: Type.Array(Type.Union([Item, Failed])), labels: Type.Optional(Labels), next: Type.Integer() });

  it('drops undeclared properties at every depth and keeps declared ones, optional and null included', () => {
    const page = {
      items: [
        { token: 'a', note: null, ciphertext: 'secret' },
        { token: 'b', error: { code: 'not_found', value: '4111111111111111' }, subjectHash: 'ff' },
      ],
      next: 2,
      prevHash: 'aa',
    };
    expect(allowListed(Page, page)).to.deep.equal({
      items: [
        { token: 'a', note: null },
        { token: 'b', error: { code: 'not_found' } },
      ],
      next: 2,
    });
    expect(page.items[0]).to.have.property('ciphertext'); // the handler's object is not changed
  });

  it('keeps record keys that match the declared pattern, drops the others, and never assigns __proto__', () => {
    const labels = JSON.parse('{"plan":"gold","count":3,"Bad Key":"x","__proto__":"admin"}');
    const out = allowListed(Page, { items: [], labels, next: 0 }) as { labels: Record<string, unknown> };
    expect(Object.keys(out.labels)).to.deep.equal(['plan', 'count', '__proto__']);
    expect(Object.getPrototypeOf(out.labels)).to.equal(Object.prototype);
    expect(out.labels.__proto__).to.equal('admin');
  });

  it('refuses a value of the wrong type, a missing required property, or a value no union member fits', () => {
    const refused = (value: unknown) => expect(() => allowListed(Page, value)).to.throw(UndeclaredResponseError);
    refused({ items: [], next: 1.5 });
    refused({ items: [] });
    refused({ items: [{ token: Buffer.from('x') }], next: 1 });
    refused({ items: [{ note: 'a', error: { code: 'not_found' } }], next: 1 });
    refused({ items: [], labels: { plan: { nested: true } }, next: 1 });
    refused({ items: {}, next: 1 });
  });

  it('lets everything through only where the schema says so (additionalProperties: true)', () => {
    const Document = Type.Object({}, { additionalProperties: true });
    expect(allowListed(Document, { openapi: '3.1.0', paths: {} })).to.deep.equal({ openapi: '3.1.0', paths: {} });
  });
});
