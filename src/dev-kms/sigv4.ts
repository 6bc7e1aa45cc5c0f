/**
 * AWS Signature Version 4 verification for the development KMS. DEV/TEST ONLY.
 *
 * Pure: the caller hands in the request (method, path, headers, body), the clock and a way to look
 * up secrets; the result says who signed it or which KMS error to answer with. Only header-based
 * signing (`Authorization: AWS4-HMAC-SHA256 …`) is supported, no presigned query strings.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
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

export function verifySigV4(req: SignedRequest, options: VerifyOptions): VerifyResult {
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

  const scope = `${auth.date}/${auth.region}/${auth.service}/${auth.terminator}`;
  const request = canonicalRequest(req, auth.signedHeaders, payloadHash);
  const stringToSign = [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(request)].join('\n');
  const key = signingKey(secret, auth.date, auth.region, auth.service);
  const expected = createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex');

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

/** The SigV4 canonical request for the headers named in `signedHeaders`. */
function canonicalRequest(req: SignedRequest, signedHeaders: string[], payloadHash: string): string {
  const queryStart = req.url.indexOf('?');
  const path = queryStart === -1 ? req.url : req.url.slice(0, queryStart);
  const query = queryStart === -1 ? '' : req.url.slice(queryStart + 1);
  const headers = signedHeaders.map((name) => `${name}:${canonicalHeaderValue(req.headers[name] ?? [])}\n`).join('');
  return [req.method.toUpperCase(), canonicalUri(path), canonicalQuery(query), headers, signedHeaders.join(';'), payloadHash].join('\n');
}

function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = hmac(`AWS4${secret}`, date);
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  return hmac(kService, 'aws4_request');
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

/** Trim, collapse inner whitespace runs to one space, join repeated values with commas. */
function canonicalHeaderValue(values: string[]): string {
  return values.map((v) => v.trim().replace(/\s+/g, ' ')).join(',');
}

/** Non-S3 services: normalize the path, then URI-encode each (already encoded) segment again. */
function canonicalUri(path: string): string {
  if (path === '' || path === '/') return '/';
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(uriEncode(segment));
  }
  const trailing = path.endsWith('/') && segments.length > 0 ? '/' : '';
  return `/${segments.join('/')}${trailing}`;
}

function canonicalQuery(query: string): string {
  if (query === '') return '';
  return query
    .split('&')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const key = eq === -1 ? pair : pair.slice(0, eq);
      const value = eq === -1 ? '' : pair.slice(eq + 1);
      return [uriEncode(safeDecode(key)), uriEncode(safeDecode(value))] as const;
    })
    .sort(([ka, va], [kb, vb]) => (ka < kb ? -1 : ka > kb ? 1 : va < vb ? -1 : va > vb ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}
