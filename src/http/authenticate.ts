import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { VaultError } from '../errors';
import { bearerToken } from '../policy/authenticator';
import type { Principal } from '../policy/policy';
import type { Vault } from '../service/vault';
import { addressKey, clientAddress, TrustedProxies } from './client-address';
import { sendError } from './error-handler';
import type { VaultMetrics } from './metrics';
import type { ApiRequest, Next } from './pipeline';
import { KeyedBuckets } from './rate-limit';

/**
 * Every /v1 route needs a valid API key (or pinned client certificate), checked from the headers
 * before the body is read. A valid key is always let through: the brake below only ever sees
 * failures, so nobody is refused for what others sharing its address did. Each failure spends
 * from its client address's budget (an IPv6 client's /64; behind a trusted proxy, the address it
 * forwarded for); past `authFailuresPerMinute` the failures get 429 instead of 401. Failures are
 * audited, rate-summarised under attack (AuthFailureAudit).
 */
export function authenticate(
  vault: Vault,
  options: { authFailuresPerMinute: number; trustedProxies: TrustedProxies },
  metrics: VaultMetrics | undefined,
) {
  const perMinute = options.authFailuresPerMinute;
  const failures = new KeyedBuckets(() => ({ ratePerSecond: perMinute / 60, burst: perMinute }));
  return async (req: ApiRequest, res: ServerResponse, next: Next) => {
    const presented = bearerToken(req.headers.authorization);
    const principal = presented !== undefined ? vault.authenticate(presented) : certificatePrincipal(vault, req);
    if (principal) {
      req.principal = principal;
      next();
      return;
    }
    const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], options.trustedProxies);
    const key = addressKey(address);
    const spent = failures.take(key, Date.now());
    metrics?.authFailures.inc();
    // The connection is closed after the answer so an unread body is never parsed.
    res.setHeader('Connection', 'close');
    try {
      await vault.recordAuthFailure(req.id, address, presented ? 'unknown API key' : 'missing API key', key);
    } catch (err) {
      next(err);
      return;
    }
    if (!spent.ok) {
      metrics?.throttled.inc({ reason: 'auth_failures' });
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(spent.retryAfterMs / 1000))));
      sendError(res, req.id, new VaultError('too_many_auth_failures'));
      return;
    }
    res.setHeader('WWW-Authenticate', 'Bearer realm="pii-vault"');
    sendError(res, req.id, new VaultError('unauthorized'));
  };
}

/** With mTLS, a verified client certificate pinned in the policy identifies its principal. */
function certificatePrincipal(vault: Vault, req: IncomingMessage): Principal | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted || !socket.authorized) return undefined;
  const fingerprint = socket.getPeerCertificate()?.fingerprint256;
  return fingerprint ? vault.authenticateCertificate(fingerprint.replace(/:/g, '').toLowerCase()) : undefined;
}
