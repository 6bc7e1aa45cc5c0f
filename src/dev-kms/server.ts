/**
 * Development KMS: a local HTTP server speaking enough of the AWS KMS JSON 1.1 protocol for the
 * real `@aws-sdk/client-kms` to use it (point the client's `endpoint` at `url`).
 *
 * DEVELOPMENT AND TEST ONLY — THIS IS NOT A KMS. Key material lives in process memory and, when a
 * data file is given, unencrypted in that file; the credentials are well known; the /_dev control
 * endpoints are unauthenticated. Never use it to protect real data.
 *
 *   POST /                     KMS requests (X-Amz-Target: TrentService.<Operation>, SigV4-signed)
 *   POST /_dev/faults          set faults: {latencyMs?, throttle?, fail?: {error, count?}|null, down?};
 *                              `{}` or `{"reset": true}` clears them all
 *   GET  /_dev/faults          current faults
 *   GET  /_dev/stats           {total, byOperation}
 *   POST /_dev/stats/reset     zero the stats
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KmsError } from './errors';
import { FaultController, type Faults, type Stats } from './faults';
import { KeyStore } from './key-store';
import { OPERATIONS } from './operations';
import { verifySigV4 } from './sigv4';

export type { Faults, Stats } from './faults';
export { KmsError, type KmsErrorName } from './errors';

interface DevKmsOptions {
  /** 0 (default) = any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** JSON state file (written atomically, mode 0600). Absent = memory only. */
  dataFile?: string;
  /** Default us-east-1. */
  region?: string;
  /** Accepted SigV4 credentials. Default [DEV_KMS_CREDENTIALS]. */
  credentials?: { accessKeyId: string; secretAccessKey: string }[];
}

export interface DevKms {
  /** e.g. http://127.0.0.1:43123 */
  url: string;
  region: string;
  close(): Promise<void>;
  setFaults(f: Partial<Faults>): void;
  clearFaults(): void;
  faults(): Faults;
  stats(): Stats;
  resetStats(): void;
  /** Same as CreateKey. */
  createKey(description?: string): Promise<{ keyId: string; arn: string }>;
  /** Same as CreateAlias; `keyId` may be a key id or key ARN. Throws KmsError. */
  createAlias(alias: string, keyId: string): void;
}

/** Well-known development credentials. Not secret; never accept them anywhere real. */
export const DEV_KMS_CREDENTIALS: { accessKeyId: string; secretAccessKey: string } = {
  accessKeyId: 'AKIAPIIVAULTDEVKMS01',
  secretAccessKey: 'pii-vault-dev-kms-secret-do-not-use-in-production',
};

const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'TrentService.';
const MAX_BODY_BYTES = 1024 * 1024;

interface Reply {
  status: number;
  body: unknown;
  errorType?: string;
}

export async function startDevKms(options: DevKmsOptions = {}): Promise<DevKms> {
  const region = options.region ?? 'us-east-1';
  const host = options.host ?? '127.0.0.1';
  const secrets = new Map((options.credentials ?? [DEV_KMS_CREDENTIALS]).map((c) => [c.accessKeyId, c.secretAccessKey]));
  const store = new KeyStore(region, options.dataFile);
  const faults = new FaultController();

  async function handleKms(req: IncomingMessage, body: Buffer, path: string): Promise<Reply> {
    const target = header(req, 'x-amz-target');
    const operation = target?.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : undefined;
    faults.record(operation ?? '(no target)');

    const auth = await verifySigV4(
      { method: req.method ?? 'GET', url: req.url ?? '/', headers: headersOf(req), body },
      { region, service: 'kms', now: new Date(), requiredSignedHeaders: ['x-amz-target'], secretFor: (id) => secrets.get(id) },
    );
    if (!auth.ok) throw new KmsError(auth.error, auth.message);

    const injected = faults.takeInjectedError();
    if (injected) throw injected;

    const handler = operation !== undefined && Object.hasOwn(OPERATIONS, operation) ? OPERATIONS[operation] : undefined;
    if (req.method !== 'POST' || path !== '/' || !handler) {
      throw new KmsError('UnsupportedOperationException', `Unsupported operation: ${req.method} ${path} ${target ?? '(no X-Amz-Target)'}`);
    }
    const contentType = header(req, 'content-type') ?? '';
    if (contentType.split(';')[0]?.trim() !== JSON_CONTENT_TYPE) {
      throw new KmsError('ValidationException', `Content-Type must be ${JSON_CONTENT_TYPE}`);
    }
    let input: unknown;
    try {
      input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch {
      throw new KmsError('ValidationException', 'The request body is not valid JSON.');
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw new KmsError('ValidationException', 'The request body must be a JSON object.');
    }
    return { status: 200, body: handler(store, input as Record<string, unknown>) };
  }

  async function onKmsRequest(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    let reply: Reply;
    try {
      const body = await readBody(req);
      reply = await handleKms(req, body, path);
    } catch (err) {
      const error = err instanceof KmsError ? err : new KmsError('KMSInternalException', 'Internal error in the development KMS.');
      reply = { status: error.status, errorType: error.code, body: { __type: error.code, message: error.message } };
    }
    const latency = faults.current.latencyMs;
    if (latency > 0) await sleep(latency);
    const headers: Record<string, string> = { 'Content-Type': JSON_CONTENT_TYPE, 'x-amzn-RequestId': randomUUID() };
    if (reply.errorType) headers['x-amzn-ErrorType'] = reply.errorType;
    send(res, reply.status, headers, reply.body);
  }

  async function onControlRequest(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const json = { 'Content-Type': 'application/json' };
    try {
      const key = `${req.method} ${path}`;
      if (key === 'GET /_dev/faults') return send(res, 200, json, faults.current);
      if (key === 'GET /_dev/stats') return send(res, 200, json, faults.stats);
      if (key === 'POST /_dev/stats/reset') {
        faults.resetStats();
        return send(res, 200, json, faults.stats);
      }
      if (key === 'POST /_dev/faults') {
        const text = (await readBody(req)).toString('utf8');
        const update = text.trim() === '' ? {} : (JSON.parse(text) as unknown);
        if (typeof update !== 'object' || update === null || Array.isArray(update)) throw new TypeError('body must be a JSON object');
        const { reset, ...rest } = update as Partial<Faults> & { reset?: unknown };
        if (reset === true || Object.keys(rest).length === 0) faults.clear();
        else faults.set(rest);
        return send(res, 200, json, faults.current);
      }
      return send(res, 404, json, { error: `no such control endpoint: ${key}` });
    } catch (err) {
      return send(res, 400, json, { error: (err as Error).message });
    }
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith('/_dev/')) {
      void onControlRequest(req, res, path);
    } else if (faults.current.down) {
      req.socket.destroy(); // unreachable: no status, no body
    } else {
      void onKmsRequest(req, res, path);
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url,
    region,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
    setFaults: (f) => faults.set(f),
    clearFaults: () => faults.clear(),
    faults: () => faults.current,
    stats: () => faults.stats,
    resetStats: () => faults.resetStats(),
    createKey: async (description = '') => {
      const key = store.createKey(description);
      return { keyId: key.keyId, arn: store.arnOf(key.keyId) };
    },
    createAlias: (alias, keyId) => {
      store.createAlias(alias, keyId);
    },
  };
}

// ---------------------------------------------------------------- HTTP helpers

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  if (res.destroyed || res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () =>
      size > MAX_BODY_BYTES
        ? reject(new KmsError('ValidationException', `Request body exceeds ${MAX_BODY_BYTES} bytes.`))
        : resolve(Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

/** Header name (lower-case) → its values in order, from the raw header list. */
function headersOf(req: IncomingMessage): Record<string, string[]> {
  const headers: Record<string, string[]> = Object.create(null);
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = (req.rawHeaders[i] as string).toLowerCase();
    (headers[name] ??= []).push(req.rawHeaders[i + 1] as string);
  }
  return headers;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
