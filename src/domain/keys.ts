import type { TenantId } from './tenants';

/** data: encrypts values; fingerprint: HMACs values and subject ids; audit: HMACs the audit chain. */
export const KEY_PURPOSES = ['data', 'fingerprint', 'audit'] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

/** A version is active (encrypts), then decrypt-only, retired (no record uses it) and destroyed (crypto-shredded). */
export const DATA_KEY_STATES = ['active', 'decrypt-only', 'retired', 'destroyed'] as const;
export type DataKeyState = (typeof DATA_KEY_STATES)[number];

/** One version of a tenant's key for a purpose, as stored: wrapped by a KEK, never in plaintext. */
export interface DataKeyRecord {
  tenant: TenantId;
  purpose: KeyPurpose;
  version: number;
  state: DataKeyState;
  kekId: string;
  /** Null once destroyed. */
  wrapped: Buffer | null;
  createdAt: number;
  encryptions: number;
}
