import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { PolicyDocument, Principal } from './policy';

const API_KEY_PREFIX = 'pvk_';

/** A new API key: 256 random bits, base64url, with a recognisable prefix for secret scanners. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

/**
 * Finds the principal holding an API key. Every stored hash is compared in constant time and the
 * loop never exits early, so timing reveals neither which key matched nor how close a guess was.
 */
export function authenticate(policy: PolicyDocument, presented: string | undefined): Principal | undefined {
  const digest = createHash('sha256')
    .update(presented ?? '', 'utf8')
    .digest();
  let match: Principal | undefined;
  for (const [id, principal] of Object.entries(policy.principals)) {
    for (const key of principal.apiKeys) {
      const equal = timingSafeEqual(digest, Buffer.from(key.sha256, 'hex'));
      if (equal && presented && !match) match = { id, roles: principal.roles, tenants: principal.tenants };
    }
  }
  return match;
}

/**
 * Finds the principal pinned to a client certificate (mTLS) by its SHA-256 fingerprint, comparing
 * every pinned fingerprint in constant time.
 */
export function authenticateCertificate(policy: PolicyDocument, fingerprintHex: string): Principal | undefined {
  const presented = Buffer.from(fingerprintHex, 'hex');
  if (presented.length !== 32) return undefined;
  let match: Principal | undefined;
  for (const [id, principal] of Object.entries(policy.principals)) {
    for (const cert of principal.clientCertificates ?? []) {
      if (timingSafeEqual(presented, Buffer.from(cert.sha256, 'hex')) && !match)
        match = { id, roles: principal.roles, tenants: principal.tenants };
    }
  }
  return match;
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S{1,512})$/i.exec(header.trim());
  return match?.[1];
}
