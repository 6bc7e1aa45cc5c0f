/**
 * One HTTP exchange over node:http / node:https. Node's global fetch cannot present a client
 * certificate without the undici package, so the client uses the core modules: mTLS, custom CAs and
 * keep-alive come from an ordinary https.Agent, and nothing beyond Node's built-ins is needed.
 */
import http from 'node:http';
import https from 'node:https';

export interface TlsOptions {
  /** CA certificate(s), PEM, to trust instead of the system's (e.g. a private CA). */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate chain, PEM (mTLS). */
  cert?: string | Buffer;
  /** Client private key, PEM (mTLS). */
  key?: string | Buffer;
  passphrase?: string;
  /** Expected server name when it differs from the URL's host. */
  servername?: string;
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

interface Exchange {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export class TimeoutError extends Error {}

/** Sends one request and reads the whole answer; rejects on a connection failure, timeout or abort. */
export function exchange(agent: http.Agent, request: Exchange): Promise<HttpAnswer> {
  const { signal } = request;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const send = request.url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = send(request.url, { method: request.method, headers: request.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        cleanup();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', fail);
    });
    const timer = setTimeout(() => fail(new TimeoutError(`no answer within ${request.timeoutMs} ms`)), request.timeoutMs);
    const onAbort = () => fail(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    function cleanup() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    function fail(err: unknown) {
      cleanup();
      req.destroy();
      reject(err);
    }
    req.on('error', fail);
    req.end(request.body);
  });
}

export function createAgent(url: URL, tls: TlsOptions | undefined): http.Agent {
  if (url.protocol === 'https:') return new https.Agent({ keepAlive: true, ...tls });
  if (url.protocol === 'http:') {
    if (tls?.cert || tls?.key) throw new TypeError('a client certificate needs an https:// baseUrl');
    return new http.Agent({ keepAlive: true });
  }
  throw new TypeError(`baseUrl must be http:// or https://, not ${url.protocol}`);
}
