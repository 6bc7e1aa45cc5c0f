import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../policy/policy';

/**
 * The request as the vault's middlewares see it: a plain Node request (the router does not
 * re-prototype it the way an express app does) plus what the router and the middlewares add.
 */
export interface ApiRequest extends IncomingMessage {
  id: string;
  principal?: Principal;
  body?: unknown;
  /** Set by the router: the matched route's path parameters. */
  params?: Record<string, string>;
  /** The matched route pattern (a metrics label, never the raw path). */
  routePath?: string;
}

export type Next = (err?: unknown) => void;
export type Middleware = (req: ApiRequest, res: ServerResponse, next: Next) => unknown;

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
