import { expect } from 'chai';
import supertest from 'supertest';
import { KeyUnavailableError } from '../../src/crypto/key-provider';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { createTestVault, openEmbeddedVault, TestVault } from '../helpers/test-vault';

describe('key cache and automatic rotation', function () {
  this.timeout(30_000);
  let v: TestVault;
  let http: ReturnType<typeof supertest>;

  /** A test vault reopened with other settings, served by its own app. */
  async function reopen(settings: { keyCacheMaxEntries?: number }): Promise<void> {
    await v.opened.close();
    v.opened = await openEmbeddedVault({ ...v.config, ...settings });
    http = supertest(
      createApp({
        vault: v.opened.vault,
        logger: createLogger('silent'),
        limits: {
          rateLimits: { default: { ratePerSecond: 100_000, burst: 100_000 }, roles: {} },
          authFailuresPerMinute: 100_000,
          maxConcurrentRequests: 10_000,
        },
      }),
    );
  }

  const tokenize = (value: string, type = 'pan') =>
    http
      .post('/v1/tokenize')
      .set(v.as('billing'))
      .send({ items: [{ type, value }] });
  const charge = (tokens: string[]) => http.post('/v1/detokenize').set(v.as('gateway')).send({ tokens, purpose: 'charge' });
  const rotate = async () => expect((await http.post('/v1/keys/rotate').set(v.as('security')).send({})).status).to.equal(200);

  beforeEach(async () => {
    v = await createTestVault();
  });
  afterEach(() => v.close());

  it('with more keys than keyCacheMaxEntries and the KEK down, the audit key and the active data key are still cached', async () => {
    await reopen({ keyCacheMaxEntries: 4 });
    const pans = ['4111111111111111', '5555555555554444', '4012888888881881', '378282246310005', '6011111111111117', '3530111333300000'];
    const tokens: string[] = [];
    for (const [i, pan] of pans.entries()) {
      if (i > 0) await rotate(); // data key v1..v6, one token under each
      const res = await tokenize(pan);
      expect(res.status).to.equal(200);
      tokens.push(res.body.items[0].token);
    }
    // Reading under every old version cycles more keys through the cache than it holds.
    for (const token of tokens.slice(0, -1)) expect((await charge([token])).body.items[0]).to.have.property('value');

    const provider = v.opened.keks.provider;
    let refused = 0;
    const down = () => {
      refused++;
      return Promise.reject(new KeyUnavailableError('the KEK is down (test)'));
    };
    provider.unwrap = down;
    provider.generateDataKey = down;

    const ready = await http.get('/readyz');
    expect(ready.body.checks, 'the audit key is still cached').to.include({ keys: 'ok' });
    const fresh = await tokenize('4000056655665556');
    expect(fresh.status, JSON.stringify(fresh.body)).to.equal(200);
    expect((await charge([tokens[5]!])).body.items[0].value).to.equal(pans[5]);
    expect(refused, 'no call reached the KEK').to.equal(0);
  });

  it('concurrent requests that find the data key due share one rotation: one generateDataKey call', async () => {
    await reopen({});
    // Enough encryptions under v1 that the new version can take all the requests below without being due again.
    expect(
      (
        await http
          .post('/v1/tokenize')
          .set(v.as('billing'))
          .send({ items: Array.from({ length: 30 }, () => ({ type: 'ssn', value: '123-45-6789' })) })
      ).status,
    ).to.equal(200);
    const deps = v.opened.vault.deps;
    const v1 = (await v.opened.keys.activeKey('default', 'data')).encryptions;
    deps.rotation.maxEncryptions = v1 + 1; // every request of one item (two seals) finds v1 due

    const requests = 10;
    const keys = v.opened.keys;
    const activeKey = keys.activeKey.bind(keys);
    let asked = 0;
    let allAsked: () => void = () => {};
    const everyoneAsked = new Promise<void>((resolve) => (allAsked = resolve));
    keys.activeKey = (tenant, purpose) => {
      if (tenant === 'default' && purpose === 'data' && ++asked === requests) allAsked();
      return activeKey(tenant, purpose);
    };
    // Like KMS, generating takes a while: until every request has looked at the key (and found it due).
    const provider = v.opened.keks.provider;
    const generate = provider.generateDataKey.bind(provider);
    let generated = 0;
    provider.generateDataKey = async (context) => {
      generated++;
      await everyoneAsked;
      return generate(context);
    };

    const results = await Promise.all(Array.from({ length: requests }, (_, i) => tokenize(`123-45-${6700 + i}`, 'ssn')));
    expect(results.map((r) => r.status)).to.deep.equal(Array(requests).fill(200));
    expect(generated, 'generateDataKey calls').to.equal(1);
    const versions = v.opened.store.db.prepare("SELECT version FROM data_keys WHERE tenant = 'default' AND purpose = 'data'").all();
    expect(versions).to.deep.equal([{ version: 1 }, { version: 2 }]);
  });
});
