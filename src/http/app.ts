import express from 'express';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { TLSSocket } from 'node:tls';
import helmet from 'helmet';
import { v4 as uuidv4 } from 'uuid';
import { MAX_ITEMS } from '../contract/schemas';
import { defaultConfigFile } from '../config';
import { findSensitiveAuthData } from '../domain/sensitive-auth-data';
import { ERROR_CATALOGUE, VaultError } from '../errors';
import { jsonBody } from './json-body';
import { VaultMetrics } from './metrics';
import { KeyedBuckets, Limit } from './rate-limit';
import type { Logger } from '../logger';
import { bearerToken } from '../policy/authenticator';
import type { Principal } from '../policy/policy';
import type { Vault } from '../service/vault';
import { errorHandler, sendError } from './error-handler';
import { buildOpenApi } from './openapi';
import { ApiRequest, chain, isJsonRequest, Middleware, Next, sendJson } from './pipeline';
import { API_ROUTES, Route } from './routes';
import { validate } from './validate';

export const MAX_BODY_BYTES = 1024 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export interface HttpLimits {
  rateLimits: { default: Limit; roles: Record<string, Limit> };
  authFailuresPerMinute: number;
  maxConcurrentRequests: number;
}

export interface AppOptions {
  vault: Vault;
  logger: Logger;
  version?: string;
  limits?: HttpLimits;
  metrics?: VaultMetrics;
}

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    principal?: Principal;
  }
}

/**
 * The HTTP API, built apart from `listen` so tests drive it in-process with supertest.
 *
 * API routes with a fixed path (tokenize, detokenize, ...) are dispatched directly to the same
 * middlewares and handlers express would run, without express's router: express re-prototypes
 * every request and response, which alone costs several times what the vault's own work does on
 * a single-value call (see the README's Performance section). Everything else, including any
 * path that does not match exactly, goes through express.
 */
export function createApp({ vault, logger, version = '0.0.0', limits = defaultLimits(), metrics }: AppOptions): RequestListener {
  const app = express();
  app.set('trust proxy', false);
  app.set('etag', false); // responses are no-store; hashing every body for an ETag is wasted work
  const perRequest = [requestContext(logger, metrics), concurrencyLimit(limits.maxConcurrentRequests), helmet() as Middleware];
  const apiGate = chain(
    authenticate(vault, limits, metrics),
    principalRateLimit(limits, metrics),
    jsonBody(MAX_BODY_BYTES),
    refuseSensitiveAuthData,
  );
  const onError = errorHandler(logger);
  app.use(...(perRequest as express.RequestHandler[]));

  const openapi = buildOpenApi(version, { metrics: metrics !== undefined });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await vault.readiness();
    const ok = Object.values(checks).every(Boolean);
    res.status(ok ? 200 : 503).json({
      status: ok ? 'ready' : 'unavailable',
      checks: Object.fromEntries(Object.entries(checks).map(([name, up]) => [name, up ? 'ok' : 'unavailable'])),
    });
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  app.use('/v1', apiGate as express.RequestHandler);
  for (const route of API_ROUTES) {
    app[route.method](route.path, handle(vault, route) as express.RequestHandler);
  }
  const knownPaths = [...new Set(API_ROUTES.map((r) => r.path))];
  for (const path of knownPaths) {
    app.all(path, (req: express.Request) => {
      throw new VaultError('method_not_allowed', `${req.method} is not allowed on ${path}.`);
    });
  }
  app.use(() => {
    throw new VaultError('not_found', 'No such route.');
  });
  app.use(onError as express.ErrorRequestHandler);

  const direct = new Map<string, Middleware>();
  for (const route of API_ROUTES.filter((r) => !r.path.includes(':'))) {
    direct.set(`${route.method.toUpperCase()} ${route.path}`, chain(...perRequest, apiGate, handle(vault, route)));
  }
  return (req, res) => {
    const path = req.url!.split('?', 1)[0];
    const dispatch = direct.get(`${req.method} ${path}`);
    if (!dispatch) return app(req, res);
    const request = req as ApiRequest;
    request.routePath = path;
    dispatch(request, res, (err?: unknown) => onError(err ?? new VaultError('not_found', 'No such route.'), request, res));
  };
}

function refuseSensitiveAuthData(req: ApiRequest, _res: ServerResponse, next: Next): void {
  const found = findSensitiveAuthData(req.body);
  if (found)
    throw new VaultError('sensitive_authentication_data', `Refused: ${found}. ${ERROR_CATALOGUE.sensitive_authentication_data.message}`);
  next();
}

function defaultLimits(): HttpLimits {
  const defaults = defaultConfigFile();
  return {
    rateLimits: defaults.rateLimits,
    authFailuresPerMinute: defaults.authFailuresPerMinute,
    maxConcurrentRequests: defaults.maxConcurrentRequests,
  };
}

/** More requests in flight than the limit: 503 at once, instead of queueing without bound. */
function concurrencyLimit(max: number) {
  let inFlight = 0;
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    if (inFlight >= max) {
      res.setHeader('Retry-After', '1');
      sendError(res, req.id, new VaultError('overloaded'));
      return;
    }
    inFlight++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        inFlight--;
      }
    };
    res.on('finish', release);
    res.on('close', release);
    next();
  };
}

/** Per-principal token buckets; a principal gets the most generous limit among its roles. */
function principalRateLimit(limits: HttpLimits, metrics: VaultMetrics | undefined) {
  const rolesOf = new Map<string, readonly string[]>();
  const buckets = new KeyedBuckets((principalId) => {
    const configured = (rolesOf.get(principalId) ?? []).map((r) => limits.rateLimits.roles[r]).filter(Boolean);
    if (configured.length === 0) return limits.rateLimits.default;
    return configured.reduce((a, b) => (b.ratePerSecond > a.ratePerSecond ? b : a));
  });
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    const principal = req.principal!;
    rolesOf.set(principal.id, principal.roles);
    const result = buckets.take(principal.id, Date.now());
    if (!result.ok) {
      metrics?.throttled.inc({ reason: 'principal' });
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(result.retryAfterMs / 1000))));
      sendError(res, req.id, new VaultError('rate_limited'));
      return;
    }
    next();
  };
}

/** Request id (a safe incoming X-Request-Id or a new UUID) and one access log line per request. */
function requestContext(logger: Logger, metrics: VaultMetrics | undefined) {
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    const incoming = req.headers['x-request-id'];
    req.id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : uuidv4();
    res.setHeader('X-Request-Id', req.id);
    res.setHeader('Cache-Control', 'no-store');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const route = req.routePath ?? (req as Partial<express.Request>).route?.path ?? null;
      if (metrics) {
        metrics.requests.inc({ route: route ?? 'unmatched', method: req.method, status: res.statusCode });
        metrics.duration.observe({ route: route ?? 'unmatched', method: req.method }, ms / 1000);
      }
      logger.info(
        { requestId: req.id, method: req.method, route, status: res.statusCode, ms, principal: req.principal?.id ?? null },
        'request',
      );
    });
    next();
  };
}

/**
 * Every /v1 route needs a valid API key, checked before the body is even read. Each failure is
 * audited and spends from the client address's budget; an address out of budget gets 429 before
 * its key is even looked at, which brakes brute-forcing.
 */
function authenticate(vault: Vault, limits: HttpLimits, metrics: VaultMetrics | undefined) {
  const perMinute = limits.authFailuresPerMinute;
  const failures = new KeyedBuckets(() => ({ ratePerSecond: perMinute / 60, burst: perMinute }));
  return async (req: ApiRequest, res: ServerResponse, next: Next) => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const wait = failures.wait(address, Date.now());
    if (wait > 0) {
      metrics?.throttled.inc({ reason: 'auth_failures' });
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(wait / 1000))));
      res.setHeader('Connection', 'close');
      sendError(res, req.id, new VaultError('too_many_auth_failures'));
      return;
    }
    const presented = bearerToken(req.headers.authorization);
    const principal = presented !== undefined ? vault.authenticate(presented) : certificatePrincipal(vault, req);
    if (principal) {
      req.principal = principal;
      next();
      return;
    }
    failures.take(address, Date.now());
    metrics?.authFailures.inc();
    res.setHeader('WWW-Authenticate', 'Bearer realm="pii-vault"');
    // The connection is closed after the 401 so an unread body is never parsed.
    res.setHeader('Connection', 'close');
    try {
      await vault.recordAuthFailure(req.id, address, presented ? 'unknown API key' : 'missing API key');
      sendError(res, req.id, new VaultError('unauthorized'));
    } catch (err) {
      next(err);
    }
  };
}

function rejectOversizedBatch(body: unknown): void {
  const batch = body as { items?: unknown; tokens?: unknown } | null;
  for (const field of ['items', 'tokens'] as const) {
    const list = batch?.[field];
    if (Array.isArray(list) && list.length > MAX_ITEMS) {
      throw new VaultError('too_many_items', `${field}: at most ${MAX_ITEMS} per request, got ${list.length}.`);
    }
  }
}

/** With mTLS, a verified client certificate pinned in the policy identifies its principal. */
function certificatePrincipal(vault: Vault, req: IncomingMessage): Principal | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted || !socket.authorized) return undefined;
  const fingerprint = socket.getPeerCertificate()?.fingerprint256;
  return fingerprint ? vault.authenticateCertificate(fingerprint.replace(/:/g, '').toLowerCase()) : undefined;
}

function handle(vault: Vault, route: Route): Middleware {
  return async (req, res) => {
    if (route.body) {
      if (!isJsonRequest(req)) throw new VaultError('unsupported_media_type');
      rejectOversizedBatch(req.body);
      validate(route.body, req.body, 'body');
    } else if (req.body !== undefined && Object.keys(req.body as object).length > 0) {
      throw new VaultError('invalid_request', 'This operation takes no request body.');
    }
    // node's querystring is what express's 'simple' query parser uses: repeated keys become arrays.
    const url = req.url!;
    const search = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
    const query = route.query ? validate<Record<string, string>>(route.query, { ...parseQuery(search) }, 'query') : {};
    const result = await route.handler({
      vault,
      caller: { principal: req.principal!, requestId: req.id },
      body: req.body,
      query,
      params: ((req as Partial<express.Request>).params ?? {}) as Record<string, string>,
    });
    if (route.status === 204 || result === undefined) {
      res.statusCode = route.status;
      res.end();
    } else sendJson(res, route.status, result);
  };
}
