import type { RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import { TObject, Type } from '@sinclair/typebox';
import helmet from 'helmet';
import Router from 'router';
import { MAX_ITEMS } from '../contract/schemas';
import { defaultConfigFile } from '../config';
import { VaultError } from '../errors';
import type { Logger } from '../logger';
import { refuseSensitiveAuthData } from '../service/input-guards';
import type { Vault } from '../service/vault';
import { authenticate } from './authenticate';
import { authorize } from './authorize';
import { TrustedProxies } from './client-address';
import { concurrencyLimit, principalConcurrencyLimit } from './concurrency';
import { errorHandler } from './error-handler';
import { jsonBody } from './json-body';
import { VaultMetrics } from './metrics';
import { buildOpenApi } from './openapi';
import { ApiRequest, isJsonRequest, Middleware, Next, sendJson } from './pipeline';
import { Limit, principalRateLimit } from './rate-limit';
import { requestContext } from './request-context';
import { allowListed } from './response-allow-list';
import { sendStreamedJson } from './streamed-json';
import { StreamedDocument } from '../service/streamed-document';
import { API_ROUTES, ApiRoute, isPublic, PublicRoute, Route, ROUTES, ServerContext, TextReply } from './routes';
import { validate } from './validate';

const MAX_BODY_BYTES = 1024 * 1024;
const TEXT = Type.String();

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

/**
 * The HTTP API, built apart from `listen` so tests drive it in-process with supertest.
 *
 * Every request goes through one router — express's own (`router`), run directly on Node's
 * request and response: an express app would re-prototype both on every request, which costs
 * more than the vault's own work on a single-value call (see the README's Performance section).
 * Each route of the table in routes.ts gets its pipeline from `pipeline()` below, so a step added
 * there (or with `router.use` before the routes) reaches every route; matching is express's
 * (case-insensitive, optional trailing slash).
 */
export function createApp({ vault, logger, version = '0.0.0', limits = defaultLimits(), metrics }: AppOptions): RequestListener {
  const context: ServerContext = { vault, metrics, openapi: buildOpenApi(version, { metrics: metrics !== undefined }) };
  const limited = concurrencyLimit(limits.maxConcurrentRequests);
  const authenticated = [
    authenticate(
      vault,
      { authFailuresPerMinute: limits.authFailuresPerMinute, trustedProxies: new TrustedProxies(limits.trustProxy ?? []) },
      metrics,
    ),
    principalRateLimit(limits.rateLimits, metrics),
    principalConcurrencyLimit(limits.maxConcurrentRequestsPerPrincipal ?? defaultConfigFile().maxConcurrentRequestsPerPrincipal),
  ];
  const body = [jsonBody(MAX_BODY_BYTES), refuseSensitiveAuthDataInBody];

  /** A route's steps after the request id and helmet, which every request gets. */
  const pipeline = (route: Route): Middleware[] => {
    if (isPublic(route)) return [matched(route), ...(route.unlimited ? [] : [limited]), answerPublic(route, context)];
    return [matched(route), limited, ...authenticated, authorize(vault, route), ...body, answerApi(route, vault)];
  };

  const router = Router({ caseSensitive: false, strict: false });
  router.use(...handlers(requestContext(logger, metrics), helmet() as Middleware));
  for (const route of ROUTES) {
    if (isPublic(route) && route.needsMetrics && !metrics) continue;
    router[route.method](route.path, ...handlers(...pipeline(route)));
  }
  // No route matched: the same limits and, under /v1, the same authentication, then 405 or 404.
  router.use(...handlers(limited));
  router.use('/v1', ...handlers(...authenticated, ...body));
  for (const path of new Set(API_ROUTES.map((r) => r.path))) {
    router.all(
      path,
      ...handlers((req) => {
        req.routePath = path;
        throw new VaultError('method_not_allowed', `${req.method} is not allowed on ${path}.`);
      }),
    );
  }
  router.use(() => {
    throw new VaultError('not_found', 'No such route.');
  });
  const onError = errorHandler(logger);
  router.use(onError as unknown as Router.ErrorRequestHandler);
  return (req, res) => router(req, res, (err) => onError(err ?? new VaultError('not_found', 'No such route.'), req as ApiRequest, res));
}

/** The vault's steps as the router's handlers: the same functions, typed for Node's request plus what the steps add. */
function handlers(...steps: Middleware[]): [Router.RequestHandler, ...Router.RequestHandler[]] {
  return steps as unknown as [Router.RequestHandler, ...Router.RequestHandler[]];
}

/** Names the matched route for the access log and metrics (the pattern, never the raw path). */
function matched(route: Route): Middleware {
  return (req, _res, next) => {
    req.routePath = route.path;
    next();
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

function rejectOversizedBatch(body: unknown): void {
  const batch = body as { items?: unknown; tokens?: unknown } | null;
  for (const field of ['items', 'tokens'] as const) {
    const list = batch?.[field];
    if (Array.isArray(list) && list.length > MAX_ITEMS) {
      throw new VaultError('too_many_items', `${field}: at most ${MAX_ITEMS} per request, got ${list.length}.`);
    }
  }
}

/** Validates the request against the route's schemas, runs its handler, and answers what the response schema allows. */
function answerApi(route: ApiRoute, vault: Vault): Middleware {
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
      params: req.params ?? {},
    });
    if (!route.response || result === undefined) {
      res.statusCode = route.status;
      res.end();
    } else if (result instanceof TextReply && route.textMediaType) {
      res.statusCode = route.status;
      res.setHeader('Content-Type', `${route.textMediaType}; charset=utf-8`);
      res.end(allowListed(TEXT, result.text));
    } else if (result instanceof StreamedDocument) await sendStreamedJson(res, route.status, route.response as TObject, result);
    else sendJson(res, route.status, allowListed(route.response, result));
  };
}

function answerPublic(route: PublicRoute, context: ServerContext): Middleware {
  return async (_req, res) => {
    const reply = await route.handler(context);
    const body = allowListed(route.response, reply.body);
    if (!route.mediaType) return sendJson(res, reply.status, body);
    res.statusCode = reply.status;
    res.setHeader('Content-Type', reply.contentType ?? route.mediaType);
    res.end(body);
  };
}
