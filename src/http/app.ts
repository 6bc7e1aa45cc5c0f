import express, { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';
import { v4 as uuidv4 } from 'uuid';
import { MAX_ITEMS } from '../contract/schemas';
import { VaultError } from '../errors';
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

export interface AppOptions {
  vault: Vault;
  logger: Logger;
  version?: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    principal?: Principal;
  }
}

/** The HTTP API, built apart from `listen` so tests drive it in-process with supertest. */
export function createApp({ vault, logger, version = '0.0.0' }: AppOptions): express.Express {
  const app = express();
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  app.use(helmet());
  app.use(requestContext(logger));

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

  app.use('/v1', authenticate(vault));
  app.use('/v1', express.json({ limit: MAX_BODY_BYTES, strict: true, type: 'application/json' }));
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

/** Request id (a safe incoming X-Request-Id or a new UUID) and one access log line per request. */
function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    req.id = incoming && REQUEST_ID.test(incoming) ? incoming : uuidv4();
    res.setHeader('X-Request-Id', req.id);
    res.setHeader('Cache-Control', 'no-store');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      logger.info(
        {
          requestId: req.id,
          method: req.method,
          route: req.route?.path ?? null,
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          principal: req.principal?.id ?? null,
        },
        'request',
      );
    });
    next();
  };
}

/** Every /v1 route needs a valid API key, checked before the body is even read. */
function authenticate(vault: Vault) {
  return (req: Request, res: Response, next: NextFunction) => {
    const principal = vault.authenticate(bearerToken(req.get('authorization')));
    if (!principal) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="pii-vault"');
      // Drain nothing: the connection is closed after the 401 so an unread body is not parsed.
      res.setHeader('Connection', 'close');
      sendError(res, req.id, new VaultError('unauthorized'));
      return;
    }
    req.principal = principal;
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
