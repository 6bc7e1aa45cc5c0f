import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, HttpLimits } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { VaultMetrics } from '../../src/http/metrics';
import { AUTH_FAILURE_AUDIT } from '../../src/service/auth-failures';
import { createTestVault, TestVault } from '../helpers/test-vault';

/** Issue 10, items 9 and 10: the failed-authentication brake and the concurrency limits. */
describe('HTTP limits: authentication brake per client, concurrency per principal', () => {
  let v: TestVault;
  afterEach(() => v.close());

  const badKey = (forwardedFor?: string) => {
    const req = v.http.post('/v1/tokenize').set('Authorization', 'Bearer pvk_wrong').send({});
    return forwardedFor === undefined ? req : req.set('X-Forwarded-For', forwardedFor);
  };
  const statuses = async (n: number, send: (i: number) => PromiseLike<{ status: number }>) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await send(i)).status);
    return out;
  };
  const authRows = async () => (await v.opened.store.auditRows(0, 100_000)).filter((r) => r.action === 'authenticate');

  describe('authentication failures (item 9)', () => {
    it('25 bad requests from one address, with and without a key, do not lock out a valid key from that address', async () => {
      v = await createTestVault({ authFailuresPerMinute: 20 });
      const seen = await statuses(25, (i) => (i % 2 ? badKey() : v.http.get('/v1/keys')));
      expect(seen.slice(0, 20).every((s) => s === 401)).to.equal(true);
      expect(seen.slice(20)).to.deep.equal([429, 429, 429, 429, 429]);
      // Both the direct dispatch (tokenize) and express's router (keys) let the valid key through.
      expect(
        (
          await v.http
            .post('/v1/tokenize')
            .set(v.as('billing'))
            .send({ items: [{ type: 'text', value: 'x' }] })
        ).status,
      ).to.equal(200);
      expect((await v.http.get('/v1/keys').set(v.as('security'))).status).to.equal(200);
      expect((await badKey()).status, 'and the address stays braked').to.equal(429);
    });

    it('a client rotating X-Forwarded-For behind no trusted proxy is still braked by its socket address', async () => {
      v = await createTestVault({ authFailuresPerMinute: 5 });
      const seen = await statuses(8, (i) => badKey(`198.51.100.${i}`));
      expect(seen).to.deep.equal([401, 401, 401, 401, 401, 429, 429, 429]);
      const rows = await authRows();
      expect(rows[0].reason).to.match(/127\.0\.0\.1$/);
      expect(JSON.stringify(rows)).not.to.contain('198.51.100.');
    });

    it('through a trusted proxy, clients are braked separately; IPv6 clients per /64; a forged left part changes nothing', async () => {
      v = await createTestVault({ authFailuresPerMinute: 3, trustProxy: ['127.0.0.1', '::1'] });
      expect(await statuses(4, () => badKey('203.0.113.5'))).to.deep.equal([401, 401, 401, 429]);
      expect(await statuses(1, () => badKey('9.9.9.9, 203.0.113.5')), 'forged hop to the left').to.deep.equal([429]);
      expect(await statuses(3, () => badKey('203.0.113.6'))).to.deep.equal([401, 401, 401]);
      expect(await statuses(4, (i) => badKey(`2001:db8:1:2::${i + 1}`))).to.deep.equal([401, 401, 401, 429]);
      expect(await statuses(1, () => badKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd')), 'same /64').to.deep.equal([429]);
      expect(await statuses(1, () => badKey('2001:db8:1:3::1')), 'next /64').to.deep.equal([401]);
      const reasons = (await authRows()).map((r) => r.reason);
      expect(reasons).to.include('unknown API key from 203.0.113.6');
      expect(reasons).to.include('unknown API key from 2001:db8:1:2::1');
    });

    it('under a flood the audit rows per window stay bounded; the rest are counted in one summary row', async () => {
      v = await createTestVault({ authFailuresPerMinute: 100_000, trustProxy: ['127.0.0.1', '::1'] });
      const start = Date.now();
      v.opened.vault.deps.now = () => start;
      // 300 failures from one address, then 2 from each of 150 others.
      await statuses(300, () => badKey('203.0.113.1'));
      await statuses(300, (i) => badKey(`198.51.${100 + Math.floor(i / 2)}.1`));
      const { perAddress, total, windowMs } = AUTH_FAILURE_AUDIT;
      expect(await authRows()).to.have.length(total);
      const perClient = new Map<string, number>();
      for (const row of await authRows()) perClient.set(row.reason!, (perClient.get(row.reason!) ?? 0) + 1);
      expect(perClient.get('unknown API key from 203.0.113.1')).to.equal(perAddress);

      // The next window opens with the summary of the last one: every failure is accounted for.
      v.opened.vault.deps.now = () => start + windowMs;
      expect((await badKey('203.0.113.1')).status).to.equal(401);
      const rows = await authRows();
      expect(rows).to.have.length(total + 2);
      expect(rows[total].requestId).to.equal('auth-failure-summary');
      expect(rows[total].reason).to.match(/^500 further failed authentications from 104 addresses since /);
      expect(rows[total + 1].reason).to.equal('unknown API key from 203.0.113.1');
      expect((await v.http.get('/v1/audit/verify').set(v.as('security'))).body.ok).to.equal(true);
    });
  });

  describe('concurrency (item 10)', () => {
    /** A real server, so requests can hold a slot with a body that has not finished arriving. */
    async function serve(limits: Partial<HttpLimits>) {
      const server = http.createServer(
        createApp({
          vault: v.opened.vault,
          logger: createLogger('silent'),
          metrics: new VaultMetrics(() => 0),
          limits: {
            rateLimits: { default: { ratePerSecond: 1e5, burst: 1e5 }, roles: {} },
            authFailuresPerMinute: 1e5,
            maxConcurrentRequests: 512,
            ...limits,
          },
        }),
      );
      // Once 'request' has been emitted the app has taken (or refused) the request's slots: they are synchronous.
      let arrived = 0;
      const waiters: Array<() => void> = [];
      server.on('request', () => {
        arrived++;
        waiters.splice(0).forEach((w) => w());
      });
      const untilArrived = async (n: number) => {
        while (arrived < n) await new Promise<void>((resolve) => waiters.push(resolve));
      };
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      const send = (path: string, headers: Record<string, string> = {}, body?: string) =>
        new Promise<{ status: number; code?: string }>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', headers, agent: false }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () =>
              resolve({ status: res.statusCode!, code: text.startsWith('{"error"') ? JSON.parse(text).error.code : undefined }),
            );
          });
          req.on('error', reject);
          req.end(body);
        });
      /** A tokenize whose body stops half-way until `finish` is called. */
      const slowTokenize = (who: 'billing') => {
        const body = JSON.stringify({ items: [{ type: 'text', value: 'slow' }] });
        const req = http.request({
          host: '127.0.0.1',
          port,
          path: '/v1/tokenize',
          method: 'POST',
          agent: false,
          headers: { ...v.as(who), 'Content-Type': 'application/json', 'Content-Length': String(body.length) },
        });
        const answer = new Promise<{ status: number }>((resolve, reject) => {
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode! }));
          });
          req.on('error', reject);
        });
        req.write(body.slice(0, 10));
        return { answer, finish: () => req.end(body.slice(10)) };
      };
      const close = () => {
        const closed = new Promise((resolve) => server.close(resolve));
        server.closeAllConnections();
        return closed;
      };
      return { server, send, slowTokenize, untilArrived, close };
    }

    it('one principal with slow bodies holds at most its own share of slots; others and the probes are still served', async () => {
      v = await createTestVault();
      const s = await serve({ maxConcurrentRequests: 6, maxConcurrentRequestsPerPrincipal: 3 });
      try {
        const slow = [s.slowTokenize('billing'), s.slowTokenize('billing'), s.slowTokenize('billing')];
        await s.untilArrived(3);
        const fourth = await s.send('/v1/tokenize', { ...v.as('billing'), 'Content-Type': 'application/json' }, '{"items":[]}');
        expect(fourth).to.deep.equal({ status: 503, code: 'overloaded' });
        expect((await s.send('/v1/keys', v.as('security'))).status, 'another principal').to.equal(200);
        expect((await s.send('/readyz')).status).to.equal(200);
        slow.forEach((r) => r.finish());
        expect((await Promise.all(slow.map((r) => r.answer))).map((r) => r.status)).to.deep.equal([200, 200, 200]);
        expect(
          (
            await s.send(
              '/v1/tokenize',
              { ...v.as('billing'), 'Content-Type': 'application/json' },
              '{"items":[{"type":"text","value":"x"}]}',
            )
          ).status,
        ).to.equal(200);
      } finally {
        await s.close();
      }
    });

    it('with every global slot held, /healthz, /readyz and /metrics still answer', async () => {
      v = await createTestVault();
      const s = await serve({ maxConcurrentRequests: 2, maxConcurrentRequestsPerPrincipal: 2 });
      try {
        // Both from billing: a principal without the tokenize grant is refused before its body is read, holding no slot.
        const slow = [s.slowTokenize('billing'), s.slowTokenize('billing')];
        await s.untilArrived(2);
        expect(await s.send('/v1/keys', v.as('security'))).to.deep.equal({ status: 503, code: 'overloaded' });
        expect((await s.send('/healthz')).status).to.equal(200);
        expect((await s.send('/readyz')).status).to.equal(200);
        expect((await s.send('/metrics')).status).to.equal(200);
        slow.forEach((r) => r.finish());
        await Promise.all(slow.map((r) => r.answer));
      } finally {
        await s.close();
      }
    });
  });
});
