import express, { NextFunction, Request, Response } from 'express';
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

/** The HTTP API, built apart from `listen` so tests drive it in-process with supertest. */
export function createApp({ vault, logger, version = '0.0.0', limits = defaultLimits(), metrics }: AppOptions): express.Express {
  const app = express();
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  app.set('etag', false); // responses are no-store; hashing every body for an ETag is wasted work
  app.use(requestContext(logger, metrics));
  app.use(concurrencyLimit(limits.maxConcurrentRequests));
  app.use(helmet());

  const openapi = buildOpenApi(version);
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

  // One /v1 layer running the whole gate (fewer router layers to walk on every request).
  app.use('/v1', chain(authenticate(vault, limits, metrics), principalRateLimit(limits, metrics), jsonBody(MAX_BODY_BYTES), refuseSensitiveAuthData));
  for (const route of API_ROUTES) {
    app[route.method](route.path, handle(vault, route));
  }
  const knownPaths = [...new Set(API_ROUTES.map((r) => r.path))];
  for (const path of knownPaths) {
    app.all(path, (req: Request) => {
      throw new VaultError('method_not_allowed', `${req.method} is not allowed on ${path}.`);
    });
  }
  app.use((_req: Request) => {
    throw new VaultError('not_found', 'No such route.');
  });
  app.use(errorHandler(logger));
  return app;
}

type Middleware = (req: Request, res: Response, next: NextFunction) => unknown;

/** Runs middlewares in order as one; an error or a response ends the chain. */
function chain(...steps: Middleware[]): Middleware {
  return (req, res, next) => {
    let i = 0;
    const step = (err?: unknown): void => {
      if (err !== undefined || i === steps.length) return next(err);
      try {
        const result = steps[i++](req, res, step);
        if (result instanceof Promise) result.catch(next);
      } catch (error) {
        next(error);
      }
    };
    step();
  };
}

function refuseSensitiveAuthData(req: Request, _res: Response, next: NextFunction): void {
  const found = findSensitiveAuthData(req.body);
  if (found) throw new VaultError('sensitive_authentication_data', `Refused: ${found}. ${ERROR_CATALOGUE.sensitive_authentication_data.message}`);
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
  return (req: Request, res: Response, next: NextFunction) => {
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
  return (req: Request, res: Response, next: NextFunction) => {
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
  return (req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    req.id = incoming && REQUEST_ID.test(incoming) ? incoming : uuidv4();
    res.setHeader('X-Request-Id', req.id);
    res.setHeader('Cache-Control', 'no-store');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const route = req.route?.path ?? null;
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
  return async (req: Request, res: Response, next: NextFunction) => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const wait = failures.wait(address, Date.now());
    if (wait > 0) {
      metrics?.throttled.inc({ reason: 'auth_failures' });
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(wait / 1000))));
      res.setHeader('Connection', 'close');
      sendError(res, req.id, new VaultError('too_many_auth_failures'));
      return;
    }
    const presented = bearerToken(req.get('authorization'));
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
function certificatePrincipal(vault: Vault, req: Request): Principal | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted || !socket.authorized) return undefined;
  const fingerprint = socket.getPeerCertificate()?.fingerprint256;
  return fingerprint ? vault.authenticateCertificate(fingerprint.replace(/:/g, '').toLowerCase()) : undefined;
}

function handle(vault: Vault, route: Route) {
  return async (req: Request, res: Response) => {
    if (route.body) {
      if (!req.is('application/json')) throw new VaultError('unsupported_media_type');
      rejectOversizedBatch(req.body);
      validate(route.body, req.body, 'body');
    } else if (req.body !== undefined && Object.keys(req.body as object).length > 0) {
      throw new VaultError('invalid_request', 'This operation takes no request body.');
    }
    const query = route.query ? validate<Record<string, string>>(route.query, { ...req.query }, 'query') : {};
    const result = await route.handler({
      vault,
      caller: { principal: req.principal!, requestId: req.id },
      body: req.body,
      query,
      params: req.params as Record<string, string>,
    });
    if (route.status === 204 || result === undefined) res.status(route.status).end();
    else res.status(route.status).json(result);
  };
}
