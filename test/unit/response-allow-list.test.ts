import { expect } from 'chai';
import { Type } from '@sinclair/typebox';
import { allowListed, UndeclaredResponseError } from '../../src/http/response-allow-list';

describe('response allow-list', () => {
  const Item = Type.Object({
    token: Type.String(),
    note: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    reveal: Type.Optional(Type.Union([Type.Literal('plain'), Type.Literal('masked')])),
  });
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

  describe('a value built with exactly the declared properties (checked, not copied)', () => {
    const exactPage = () => ({
      items: [
        { token: 'a', note: null, reveal: 'masked' },
        { token: 'b', note: undefined },
        { token: 'c', error: { code: 'not_found' } },
      ],
      labels: { plan: 'gold', count: 3 },
      next: 3,
    });
    /** What would leave the vault: the allow-listed value as the response body is written. */
    const sent = (value: unknown) => JSON.stringify(allowListed(Page, value));

    it('is answered as it is, the same object', () => {
      const page = exactPage();
      expect(allowListed(Page, page)).to.equal(page);
      expect(allowListed(Page, JSON.parse(JSON.stringify(page)))).to.deep.equal(JSON.parse(JSON.stringify(page)));
    });

    it('writes the same bytes as the copy would: declared keys out of declared order are put back in it', () => {
      const reordered = { next: 1, items: [{ reveal: 'plain', token: 'a' }], labels: { plan: 'gold' } };
      expect(sent(reordered)).to.equal('{"items":[{"token":"a","reveal":"plain"}],"labels":{"plan":"gold"},"next":1}');
      const labelsFirst = { items: [], labels: { plan: 'gold' }, next: 0 };
      expect(allowListed(Page, labelsFirst)).to.equal(labelsFirst);
    });

    it('still loses an undeclared property added at any depth', () => {
      const variants: ((page: ReturnType<typeof exactPage>) => void)[] = [
        (page) => Object.assign(page, { secret: 's3cr3t' }),
        (page) => Object.assign(page.items[0], { secret: 's3cr3t' }),
        (page) => Object.assign(page.items[2], { secret: 's3cr3t' }),
        (page) => Object.assign(page.items[2].error!, { secret: 's3cr3t' }),
        (page) => Object.assign(page.labels, { 'not a label': 's3cr3t' }),
        // JSON.stringify calls toJSON even when it is not enumerable, or is inherited from a class.
        (page) => Object.defineProperty(page.items[1], 'toJSON', { value: () => ({ token: 'b', secret: 's3cr3t' }) }),
        (page) => Object.defineProperty(page.items, 'toJSON', { value: () => [{ secret: 's3cr3t' }] }),
        (page) => {
          class Row {
            readonly note = null;
            readonly reveal = 'masked';
            constructor(readonly token: string) {}
            toJSON() {
              return { token: this.token, secret: 's3cr3t' };
            }
          }
          page.items[0] = new Row('a') as never;
        },
      ];
      for (const [i, change] of variants.entries()) {
        const page = exactPage();
        change(page);
        expect(sent(page), `variant ${i}`).not.to.include('s3cr3t');
        expect(JSON.parse(sent(page)), `variant ${i}`).to.deep.equal(JSON.parse(JSON.stringify(exactPage())));
      }
    });

    it('still refuses a value of the wrong type or a missing required property at any depth', () => {
      const variants: ((page: any) => void)[] = [
        (page) => (page.next = '3'),
        (page) => (page.next = 1.5),
        (page) => (page.items[0].token = 42),
        (page) => (page.items[0].note = { value: '4111111111111111' }),
        (page) => (page.labels.count = { nested: true }),
        (page) => (page.items[1] = '4111111111111111'),
        (page) => (page.items[0].reveal = 'everything'),
        (page) => delete page.items[0].token,
        (page) => (page.items = { 0: page.items[0] }),
      ];
      for (const [i, change] of variants.entries()) {
        const page = exactPage();
        change(page);
        expect(() => allowListed(Page, page), `variant ${i}`).to.throw(UndeclaredResponseError);
      }
      // A failed item whose code is not declared fits only the other member, without its error.
      const page: any = exactPage();
      page.items[2].error.code = 'wrong_code';
      expect(sent(page)).not.to.include('wrong_code');
      // A boxed primitive is an object without properties, but JSON.stringify writes its value.
      const boxed: any = exactPage();
      boxed.labels = new Number(4111111111111111);
      expect(sent(boxed)).not.to.include('4111111111111111');
    });
  });

  it('lets everything through only where the schema says so (additionalProperties: true)', () => {
    const Document = Type.Object({}, { additionalProperties: true });
    expect(allowListed(Document, { openapi: '3.1.0', paths: {} })).to.deep.equal({ openapi: '3.1.0', paths: {} });
  });
});
