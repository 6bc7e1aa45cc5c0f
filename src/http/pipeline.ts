import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../policy/policy';

/**
 * The request as the vault's middlewares see it: a plain Node request plus what they add. They
 * are written against Node's types, not express's, so the same steps serve express's router and
 * the direct dispatch of the hot routes (see app.ts).
 */
export interface ApiRequest extends IncomingMessage {
  id: string;
  principal?: Principal;
  body?: unknown;
  /** The matched route pattern (a metrics label, never the raw path). */
  routePath?: string;
}

export type Next = (err?: unknown) => void;
export type Middleware = (req: ApiRequest, res: ServerResponse, next: Next) => unknown;

/** Runs middlewares in order as one; an error or a response ends the chain. */
export function chain(...steps: Middleware[]): Middleware {
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

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}

/** A request that has a body, declared as `application/json` (parameters such as charset allowed). */
export function isJsonRequest(req: IncomingMessage): boolean {
  const hasBody = req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;
  const mediaType = req.headers['content-type']?.split(';', 1)[0].trim().toLowerCase();
  return hasBody && mediaType === 'application/json';
}
