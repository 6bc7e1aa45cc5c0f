/**
 * AWS Signature Version 4 verification for the development KMS. DEV/TEST ONLY.
 *
 * The caller hands in the request (method, path, headers, body), the clock and a way to look up
 * secrets; the result says who signed it or which KMS error to answer with. The checks a signer
 * does not make (scope, clock skew, which headers must be signed) are made here; the signature
 * itself is recomputed with the SDK's own signer (@smithy/signature-v4) over the headers the client
 * says it signed, and compared in constant time. Only header-based signing
 * (`Authorization: AWS4-HMAC-SHA256 …`) is supported, no presigned query strings.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { KmsErrorName } from './errors';

const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';

/** Largest accepted difference between X-Amz-Date and the server clock. */
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

interface SignedRequest {
  method: string;
  /** Request target as sent: path plus optional `?query`. */
  url: string;
  /** Lower-cased header names; repeated headers as several values, in order. */
  headers: Record<string, string[]>;
  body: Buffer;
}

interface VerifyOptions {
  region: string;
  service: string;
  now: Date;
  /**
   * Headers that must be signed besides host and x-amz-date: for KMS, X-Amz-Target names the
   * operation, and a request that does not sign it could be replayed as another operation.
   */
  requiredSignedHeaders?: string[];
  /** The secret for an access key id, or undefined when the key is unknown. */
  secretFor(accessKeyId: string): string | undefined;
}

type VerifyResult =
  | { ok: true; accessKeyId: string }
  | {
      ok: false;
      error: Extract<KmsErrorName, 'MissingAuthenticationTokenException' | 'UnrecognizedClientException' | 'InvalidSignatureException'>;
      message: string;
    };

interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  terminator: string;
  signedHeaders: string[];
  signature: string;
}

export async function verifySigV4(req: SignedRequest, options: VerifyOptions): Promise<VerifyResult> {
  const authorization = single(req.headers, 'authorization');
  if (authorization === undefined || authorization.trim() === '') {
    return fail('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const auth = parseAuthorization(authorization);
  if (typeof auth === 'string') return fail('InvalidSignatureException', auth);

  const secret = options.secretFor(auth.accessKeyId);
  if (secret === undefined) {
    return fail('UnrecognizedClientException', 'The security token included in the request is invalid.');
  }

  const amzDate = single(req.headers, 'x-amz-date');
  if (amzDate === undefined) return fail('InvalidSignatureException', 'Missing X-Amz-Date header.');
  const signedAt = parseAmzDate(amzDate);
  if (signedAt === undefined) return fail('InvalidSignatureException', `Invalid X-Amz-Date '${amzDate}'.`);
  if (Math.abs(options.now.getTime() - signedAt.getTime()) > MAX_CLOCK_SKEW_MS) {
    return fail('InvalidSignatureException', `Signature expired: ${amzDate} is more than 15 minutes from the server time.`);
  }

  if (auth.date !== amzDate.slice(0, 8)) {
    return fail('InvalidSignatureException', 'Credential scope date does not match X-Amz-Date.');
  }
  if (auth.region !== options.region) {
    return fail('InvalidSignatureException', `Credential should be scoped to a valid region, not '${auth.region}'.`);
  }
  if (auth.service !== options.service || auth.terminator !== 'aws4_request') {
    return fail('InvalidSignatureException', `Credential should be scoped to correct service: '${options.service}'.`);
  }
  for (const required of ['host', 'x-amz-date', ...(options.requiredSignedHeaders ?? [])]) {
    if (!auth.signedHeaders.includes(required)) {
      return fail('InvalidSignatureException', `Header '${required}' must be signed.`);
    }
  }
  for (const name of auth.signedHeaders) {
    if (req.headers[name] === undefined) {
      return fail('InvalidSignatureException', `Signed header '${name}' is missing from the request.`);
    }
  }

  const payloadHash = sha256Hex(req.body);
  const declaredHash = single(req.headers, 'x-amz-content-sha256');
  if (declaredHash !== undefined && declaredHash !== payloadHash) {
    return fail('InvalidSignatureException', 'The provided x-amz-content-sha256 does not match the request body.');
  }

  const expected = await expectedSignature(req, auth, signedAt, secret);

  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(auth.signature, 'utf8');
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    return fail(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    );
  }
  return { ok: true, accessKeyId: auth.accessKeyId };
}

/** The signature the SDK's signer gives this request, signing exactly the headers the client named. */
async function expectedSignature(req: SignedRequest, auth: ParsedAuthorization, signedAt: Date, secret: string): Promise<string> {
  const signer = new SignatureV4({
    service: auth.service,
    region: auth.region,
    credentials: { accessKeyId: auth.accessKeyId, secretAccessKey: secret },
    sha256: NodeSha256,
    // The payload hash header is checked above; the signer must not add one the client did not sign.
    applyChecksum: false,
  });
  const queryStart = req.url.indexOf('?');
  const signedHeaders = Object.fromEntries(auth.signedHeaders.map((name) => [name, single(req.headers, name) ?? '']));
  const signed = await signer.sign(
    {
      method: req.method.toUpperCase(),
      protocol: 'http:',
      hostname: signedHeaders.host ?? '',
      path: queryStart === -1 ? req.url : req.url.slice(0, queryStart),
      query: queryOf(queryStart === -1 ? '' : req.url.slice(queryStart + 1)),
      headers: signedHeaders,
      body: req.body,
    },
    { signingDate: signedAt, signableHeaders: new Set(auth.signedHeaders) },
  );
  return /Signature=([0-9a-f]+)$/.exec(String(signed.headers.authorization))?.[1] ?? '';
}

/** node:crypto behind the hash interface the signer takes: SHA-256, or HMAC-SHA256 with a secret. */
class NodeSha256 {
  private hash;

  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.fresh();
  }

  update(data: Uint8Array): void {
    this.hash.update(data);
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {
    this.hash = this.fresh();
  }

  private fresh() {
    const secret = this.secret;
    if (secret === undefined) return createHash('sha256');
    if (typeof secret === 'string') return createHmac('sha256', secret);
    const key = ArrayBuffer.isView(secret) ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength) : Buffer.from(secret);
    return createHmac('sha256', key);
  }
}

// ---------------------------------------------------------------- helpers

function fail<E extends Extract<VerifyResult, { ok: false }>['error']>(error: E, message: string): VerifyResult {
  return { ok: false, error, message };
}

function single(headers: Record<string, string[]>, name: string): string | undefined {
  const values = headers[name];
  return values === undefined ? undefined : values.join(',');
}

/** `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex` */
function parseAuthorization(header: string): ParsedAuthorization | string {
  const trimmed = header.trim();
  if (!trimmed.startsWith(`${SIGV4_ALGORITHM} `)) {
    return `Unsupported authorization type; only ${SIGV4_ALGORITHM} is accepted.`;
  }
  const fields = new Map<string, string>();
  for (const part of trimmed.slice(SIGV4_ALGORITHM.length).split(',')) {
    const eq = part.indexOf('=');
    if (eq === -1) return 'Malformed Authorization header.';
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || !signedHeaders || !signature) {
    return 'Authorization header requires Credential, SignedHeaders and Signature.';
  }
  const scope = credential.split('/');
  if (scope.length !== 5 || scope.some((s) => s === '')) {
    return 'Credential must have the form ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request.';
  }
  const [accessKeyId, date, region, service, terminator] = scope as [string, string, string, string, string];
  const names = signedHeaders.split(';');
  const sorted = [...names].sort();
  if (names.some((n, i) => n === '' || n !== n.toLowerCase() || n !== sorted[i] || names.indexOf(n) !== i)) {
    return 'SignedHeaders must be lower-case, unique and sorted.';
  }
  if (!/^[0-9a-f]{64}$/.test(signature)) return 'Signature must be 64 lower-case hex digits.';
  return { accessKeyId, date, region, service, terminator, signedHeaders: names, signature };
}

/** `YYYYMMDDTHHMMSSZ` → Date, or undefined if malformed. */
function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return date.getUTCDate() === d && date.getUTCHours() === h ? date : undefined;
}

/** `a=1&b=2&b=3` → { a: '1', b: ['2', '3'] }, decoded (the signer encodes again). */
function queryOf(query: string): Record<string, string | string[]> {
  const result: Record<string, string | string[]> = {};
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = safeDecode(eq === -1 ? pair : pair.slice(0, eq));
    const value = safeDecode(eq === -1 ? '' : pair.slice(eq + 1));
    const seen = result[key];
    result[key] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value];
  }
  return result;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
