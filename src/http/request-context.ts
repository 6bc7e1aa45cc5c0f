import type { ServerResponse } from 'node:http';
import type { Logger } from '../logger';
import type { VaultMetrics } from './metrics';
import type { ApiRequest, Next } from './pipeline';
import { requestIdFor } from './request-id';

/** Request id (an incoming X-Request-Id of a PII-free shape, or a new UUID) and one access log line per request. */
export function requestContext(logger: Logger, metrics: VaultMetrics | undefined) {
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    req.id = requestIdFor(req.headers['x-request-id']);
    res.setHeader('X-Request-Id', req.id);
    res.setHeader('Cache-Control', 'no-store');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const route = req.routePath ?? null;
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
