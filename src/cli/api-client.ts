/**
 * The API of a running vault, for the commands that call it (keys, subjects): URL and API key from
 * --url/--api-key or PII_VAULT_URL/PII_VAULT_API_KEY (prefer the environment: flags end up in shell
 * history). The caller is the key's principal: the same policy and audit apply as for any caller.
 */
import type { ErrorResponse } from '../contract/schemas';

/** A failure the command reports in one line (exit 1). */
export class CliError extends Error {}

/** Calls the API; the response is typed by the contract schema of the route called. */
type Api = <T>(method: string, path: string, body?: object) => Promise<T>;

export function apiClient(o: { url?: string; apiKey?: string }): Api {
  const base = (o.url ?? process.env.PII_VAULT_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const apiKey = o.apiKey ?? process.env.PII_VAULT_API_KEY;
  if (!apiKey) throw new CliError('an API key is needed: set PII_VAULT_API_KEY (or pass --api-key)');
  return async <T>(method: string, path: string, body?: object): Promise<T> => {
    let res: Response;
    try {
      res = await fetch(base + path, {
        method,
        headers: { Authorization: `Bearer ${apiKey}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new CliError(
        `cannot reach the vault at ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`,
      );
    }
    const payload: unknown = await res.json().catch(() => ({}));
    if (!res.ok) {
      const error = (payload as Partial<ErrorResponse>).error;
      throw new CliError(`${res.status} ${error?.code ?? ''}: ${error?.message ?? res.statusText}`);
    }
    return payload as T;
  };
}

/** Prints a result as indented JSON (--json). */
export function print(out: NodeJS.WritableStream, value: unknown): number {
  out.write(JSON.stringify(value, null, 2) + '\n');
  return 0;
}
