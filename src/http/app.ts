import express from 'express';
import type { RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import helmet from 'helmet';
import { MAX_ITEMS } from '../contract/schemas';
import { defaultConfigFile } from '../config';
import { VaultError } from '../errors';
import { jsonBody } from './json-body';
import { requestIdFor } from './request-id';
import { VaultMetrics } from './metrics';
import { KeyedBuckets, Limit } from './rate-limit';
import { authenticate } from './authenticate';
import { TrustedProxies } from './client-address';
import { concurrencyLimit, principalConcurrencyLimit } from './concurrency';
import type { Logger } from '../logger';
import type { Principal } from '../policy/policy';
import { refuseSensitiveAuthData } from '../service/input-guards';
import type { Vault } from '../service/vault';
import { errorHandler, sendError } from './error-handler';
import { buildOpenApi } from './openapi';
import { ApiRequest, chain, isJsonRequest, Middleware, Next, sendJson } from './pipeline';
import { API_ROUTES, Route } from './routes';
import { validate } from './validate';

const MAX_BODY_BYTES = 1024 * 1024;

export interface HttpLimits {
  rateLimits: { default: Limit; roles: Record<string, Limit> };
  authFailuresPerMinute: number;
  maxConcurrentRequests: number;
  /** Default: the config default. */
  maxConcurrentRequestsPerPrincipal?: number;
  /** Proxies whose X-Forwarded-For is believed (addresses, CIDRs); default none. */
  trustProxy?: readonly string[];
}

interface AppOptions {
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
  const defaults = defaultConfigFile();
  // The probes and /metrics are not subject to the concurrency limit: a liveness probe failing
  // under load would make an orchestrator restart a healthy instance.
  const unlimited = [requestContext(logger, metrics), helmet() as Middleware];
  const limited = concurrencyLimit(limits.maxConcurrentRequests);
  const apiGate = chain(
    authenticate(
      vault,
      { authFailuresPerMinute: limits.authFailuresPerMinute, trustedProxies: new TrustedProxies(limits.trustProxy ?? []) },
      metrics,
    ),
    principalRateLimit(limits, metrics),
    principalConcurrencyLimit(limits.maxConcurrentRequestsPerPrincipal ?? defaults.maxConcurrentRequestsPerPrincipal),
    jsonBody(MAX_BODY_BYTES),
    refuseSensitiveAuthDataInBody,
  );
  const onError = errorHandler(logger);
  app.use(...(unlimited as express.RequestHandler[]));

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
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }
  app.use(limited as express.RequestHandler);
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });

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
    direct.set(`${route.method.toUpperCase()} ${route.path}`, chain(...unlimited, limited, apiGate, handle(vault, route)));
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

/** Every /v1 body, whatever its route; tokenize checks its request again (see input-guards.ts). */
function refuseSensitiveAuthDataInBody(req: ApiRequest, _res: ServerResponse, next: Next): void {
  refuseSensitiveAuthData(req.body);
  next();
}

function defaultLimits(): HttpLimits {
  const defaults = defaultConfigFile();
  return {
    rateLimits: defaults.rateLimits,
    authFailuresPerMinute: defaults.authFailuresPerMinute,
    maxConcurrentRequests: defaults.maxConcurrentRequests,
    maxConcurrentRequestsPerPrincipal: defaults.maxConcurrentRequestsPerPrincipal,
    trustProxy: defaults.trustProxy,
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

/** Request id (an incoming X-Request-Id of a PII-free shape, or a new UUID) and one access log line per request. */
function requestContext(logger: Logger, metrics: VaultMetrics | undefined) {
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    req.id = requestIdFor(req.headers['x-request-id']);
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

function rejectOversizedBatch(body: unknown): void {
  const batch = body as { items?: unknown; tokens?: unknown } | null;
  for (const field of ['items', 'tokens'] as const) {
    const list = batch?.[field];
    if (Array.isArray(list) && list.length > MAX_ITEMS) {
      throw new VaultError('too_many_items', `${field}: at most ${MAX_ITEMS} per request, got ${list.length}.`);
    }
  }
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
