import type { ServerResponse } from 'node:http';
import { VaultError } from '../errors';
import { sendError } from './error-handler';
import type { ApiRequest, Next } from './pipeline';

/** Takes a slot until the response finishes or the connection closes, whichever comes first. */
function holdUntilDone(res: ServerResponse, release: () => void): void {
  let released = false;
  const once = () => {
    if (!released) {
      released = true;
      release();
    }
  };
  res.on('finish', once);
  res.on('close', once);
}

function refuse(req: ApiRequest, res: ServerResponse, message?: string): void {
  res.setHeader('Retry-After', '1');
  // The body (if any) is not read: the connection ends with the answer.
  res.setHeader('Connection', 'close');
  sendError(res, req.id, new VaultError('overloaded', message));
}

/** More requests in flight than the limit: 503 at once, instead of queueing without bound. */
export function concurrencyLimit(max: number) {
  let inFlight = 0;
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    if (inFlight >= max) return refuse(req, res);
    inFlight++;
    holdUntilDone(res, () => inFlight--);
    next();
  };
}

/**
 * At most `max` requests in flight per principal, so one principal (slow bodies, a stuck client)
 * cannot hold every slot of the global limit. It runs right after authentication, which needs only
 * the headers: a request is counted against its principal before its body is read.
 */
export function principalConcurrencyLimit(max: number) {
  const inFlight = new Map<string, number>();
  return (req: ApiRequest, res: ServerResponse, next: Next) => {
    const id = req.principal!.id;
    const count = inFlight.get(id) ?? 0;
    if (count >= max) return refuse(req, res, `This principal has ${max} requests in flight, its limit; retry shortly.`);
    inFlight.set(id, count + 1);
    holdUntilDone(res, () => {
      const left = inFlight.get(id)! - 1;
      if (left === 0) inFlight.delete(id);
      else inFlight.set(id, left);
    });
    next();
  };
}
