import type { ServerResponse } from 'node:http';
import type { Vault } from '../service/vault';
import type { ApiRequest, Next } from './pipeline';
import type { ApiRoute } from './routes';

/**
 * The coarse policy check every API route gets from its place in the pipeline: some grant names
 * the route's action, whatever the tenant, type or purpose (the use case decides those). It runs
 * from the headers, before the body is read; a refusal is audited, then answered 403.
 */
export function authorize(vault: Vault, route: ApiRoute) {
  return (req: ApiRequest, _res: ServerResponse, next: Next) => {
    if (vault.hasGrant(req.principal!, route.action)) return next();
    return vault.refuseUngranted({ principal: req.principal!, requestId: req.id }, route.action, route.auditAction);
  };
}
