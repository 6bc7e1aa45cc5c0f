import type { DataType, TokenFormat } from '../domain/types';
import type { KeyPurpose } from '../crypto/key-provider';

export type Metadata = Record<string, string | number | boolean | null>;

/** One tokenized value as stored: ciphertext only, bound to its row by the AAD. */
export interface TokenRecord {
  token: string;
  tenant: string;
  type: DataType;
  format: TokenFormat;
  keyVersion: number;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  /** HMAC of the normalised value, set only for deterministic tokens (unique per tenant and type). */
  fingerprint: Buffer | null;
  /** HMAC of the data subject id, for GDPR/CCPA export and erasure lookups. */
  subjectHash: Buffer | null;
  /** The subject id itself, sealed under the same data key (nonce | tag | ciphertext). */
  subjectSealed: Buffer | null;
  metadata: Metadata | null;
  createdAt: number;
  expiresAt: number | null;
}

export type DataKeyState = 'active' | 'decrypt-only' | 'retired' | 'destroyed';

export interface DataKeyRecord {
  tenant: string;
  purpose: KeyPurpose;
  version: number;
  state: DataKeyState;
  kekId: string;
  wrapped: Buffer | null;
  createdAt: number;
  encryptions: number;
}

/** What an audit row says. Never a value; personal identifiers only as HMACs. */
export interface AuditEntry {
  ts: string;
  requestId: string;
  principal: string;
  tenant: string | null;
  action: string;
  types: string[];
  tokens: string[];
  purpose: string | null;
  outcome: 'allow' | 'deny' | 'partial';
  reason: string | null;
  /** Keyed HMACs (hex) of the data subjects involved, never the ids themselves. */
  subjects: string[];
}

export interface AuditRow extends AuditEntry {
  seq: number;
  keyVersion: number;
  prevHash: Buffer;
  hash: Buffer;
}

/** Computes a row's chained MAC; the store calls it inside the transaction that appends the row. */
export interface AuditSealer {
  readonly keyVersion: number;
  seal(prevHash: Buffer, seq: number, entry: AuditEntry, keyVersion: number): Buffer;
}

export interface PendingAudit {
  entry: AuditEntry;
  sealer: AuditSealer;
}

/** Gives record `index` a fresh token (and so a fresh ciphertext) after a token collision. */
export type Retokenize = (index: number) => TokenRecord;

/**
 * Persistence seam. Every write that changes records also appends its audit row in the same
 * transaction, so a record never exists without the audit of its creation, nor the reverse.
 */
export interface VaultStore {
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;

  activeDataKey(tenant: string, purpose: KeyPurpose): Promise<DataKeyRecord | undefined>;
  dataKey(tenant: string, purpose: KeyPurpose, version: number): Promise<DataKeyRecord | undefined>;
  /** Inserts a key version; false when that version already exists (another process won). */
  insertDataKey(record: DataKeyRecord): Promise<boolean>;

  /**
   * Stores the records atomically with the audit row; returns the token of each record in order.
   * A deterministic record whose fingerprint exists returns the existing token; a token collision
   * asks `retokenize` for a new one. The audit entry's tokens are set to the returned tokens.
   */
  insertTokens(records: TokenRecord[], audit: PendingAudit, retokenize: Retokenize, now: number): Promise<string[]>;
  findTokens(tokens: readonly string[]): Promise<Map<string, TokenRecord>>;
  /** Deletes a token of the tenant with its audit row; false (and no row) when there is none. */
  deleteToken(tenant: string, token: string, audit: PendingAudit): Promise<boolean>;

  appendAudit(audit: PendingAudit): Promise<AuditRow>;
  auditRows(afterSeq: number, limit: number): Promise<AuditRow[]>;
}

export class TokenCollisionError extends Error {
  constructor() {
    super('could not allocate a unique token');
    this.name = 'TokenCollisionError';
  }
}

/** The store cannot be used (locked, disk full, connection lost). Maps to 503. */
export class StoreUnavailableError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/** The audit row was not written; callers must refuse the request (fail closed). */
export class AuditUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super('audit log cannot be written');
    this.name = 'AuditUnavailableError';
  }
}

export const GENESIS_HASH = Buffer.alloc(32);
export const MAX_TOKEN_ATTEMPTS = 10;
