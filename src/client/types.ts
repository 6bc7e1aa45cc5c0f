/**
 * The API v1 request and response shapes as the client sees them. Written out (not imported from
 * src/contract) so that the client needs nothing beyond Node's built-ins; test/integration/client.test.ts
 * checks at compile time that each one equals the contract's type, so they cannot drift apart.
 */

export type DataType = 'pan' | 'ssn' | 'email' | 'phone' | 'name' | 'dob' | 'address' | 'iban' | 'text';
export type TokenFormat = 'random' | 'uuid' | 'pan' | 'digits' | 'email';
export type Preserve = 'none' | 'last4' | 'bin6' | 'bin6last4' | 'domain';
export type RevealLevel = 'plain' | 'masked' | 'generalized' | 'redacted';
export type ItemErrorCode = 'not_found' | 'forbidden' | 'expired' | 'integrity_failed' | 'ambiguous_token' | 'erased';
/** Why a `forbidden` item was refused when the policy would have allowed it. */
export type ItemErrorReason = 'consent_not_given';
export type MetadataValue = string | number | boolean | null;

export interface TokenizeItem {
  type: DataType;
  value: string;
  format?: TokenFormat;
  preserve?: Preserve;
  /** Same tenant, type, value, format and preserve always give the same token (and a retry is then safe). */
  deterministic?: boolean;
  subject?: string;
  /** Purposes the subject consented to, added to its consented set (needs `subject`). */
  purposes?: string[];
  metadata?: { [key: string]: MetadataValue };
  ttlSeconds?: number;
}

export interface TokenizeRequest {
  tenant?: string;
  items: TokenizeItem[];
  /** Consented purposes for the subject of every item (each needs `subject`). */
  purposes?: string[];
}

export interface TokenizedItem {
  token: string;
  type: DataType;
}

export interface TokenizeResponse {
  items: TokenizedItem[];
}

export interface DetokenizeRequest {
  tokens: string[];
  purpose?: string;
  reveal?: RevealLevel;
  tenant?: string;
}

/** What the server sends per token: a value, or the reason there is none. */
export type DetokenizeWireItem =
  | { token: string; type: DataType; value: string | null; reveal: RevealLevel }
  | { token: string; error: { code: ItemErrorCode; reason?: ItemErrorReason } };

export interface DetokenizeWireResponse {
  items: DetokenizeWireItem[];
}

/** One token's outcome, as a discriminated union on `ok`. */
export type DetokenizeResult =
  | { ok: true; token: string; type: DataType; value: string | null; reveal: RevealLevel }
  | { ok: false; token: string; error: { code: ItemErrorCode; reason?: ItemErrorReason } };

export interface TokenMetadata {
  token: string;
  type: DataType;
  tenant: string;
  format: TokenFormat;
  createdAt: string;
  expiresAt: string | null;
  keyVersion: number;
  subject: string | null;
  metadata: { [key: string]: MetadataValue } | null;
}

export interface AuditRow {
  seq: number;
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
  subjects: string[];
  keyVersion: number;
  hash: string;
}

export interface AuditPage {
  items: AuditRow[];
  /** Pass as `after` for the next page; null at the end. */
  next: number | null;
}

interface AuditVerifyRun {
  archivedThrough: number;
  verifiedFrom: number;
  checkpoint: 'none' | 'used' | 'valid' | 'rejected';
}

export type AuditVerifyResult =
  | ({ ok: true; rows: number; headSeq: number; headHash: string } & AuditVerifyRun)
  | ({ ok: false; rows: number; firstBadSeq: number; reason: string } & AuditVerifyRun)
  | { ok: boolean; scope: 'tenants' };

/** One row of a policy report: allowed when the request states one of `purposes` (null: any or none), at most at `reveal`. */
export interface PolicyPermission {
  action: string;
  /** Null for an action on no value. */
  type: DataType | null;
  /** Null for an action that shows no value (all but detokenize). */
  reveal: RevealLevel | null;
  purposes: string[] | null;
}

export interface PolicyReport {
  policyVersion: number;
  generatedAt: string;
  /** Most revealing first. */
  revealLevels: RevealLevel[];
  roles: { role: string; permissions: PolicyPermission[] }[];
  principals: { principal: string; roles: string[]; tenants: string[]; permissions: PolicyPermission[] }[];
  /** Null: not limited. */
  retention: { type: DataType; defaultTtlSeconds: number | null; maxTtlSeconds: number | null }[];
}

export interface KeyView {
  tenant: string;
  purpose: 'data' | 'fingerprint' | 'audit';
  version: number;
  state: 'active' | 'decrypt-only' | 'retired' | 'destroyed';
  kekId: string;
  createdAt: string;
  encryptions: number;
  records: number | null;
}

/** One tenant, or every tenant the caller covers; neither means the caller's default tenant. */
export interface KeyScope {
  tenant?: string;
  all?: boolean;
}

export interface RotateResult {
  rotated: { tenant: string; purpose: 'data'; version: number; previousVersion: number | null }[];
}

export type RewrapTarget = { type: 'local' } | { type: 'aws-kms'; keyId?: string };

export interface RewrapResult {
  kekId: string;
  rewrapped: number;
  unchanged: number;
  failed: { tenant: string; purpose: string; version: number; error: string }[];
}

export interface Job {
  id: string;
  kind: 'reencrypt';
  state: 'running' | 'completed' | 'failed';
  tenants: string[];
  total: number;
  done: number;
  failed: number;
  ratePerSecond: number;
  etaSeconds: number | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  error: string | null;
}

/** A data subject, named in the body (never in a URL). */
export interface SubjectRequest {
  tenant?: string;
  subject: string;
}

export interface AccessLogRequest extends SubjectRequest {
  /** ISO 8601 with a zone: decisions at or after it. */
  from?: string;
  /** ISO 8601 with a zone: decisions before it. */
  to?: string;
}

export interface ConsentRequest extends SubjectRequest {
  grant?: string[];
  withdraw?: string[];
}

export interface ExportedRecord {
  token: string;
  type: DataType;
  format: TokenFormat;
  createdAt: string;
  expiresAt: string | null;
  metadata: { [key: string]: MetadataValue } | null;
  value: string | null;
  reveal: RevealLevel;
  error?: { code: 'integrity_failed' | 'erased' };
}

export interface SubjectExport {
  tenant: string;
  /** Null when no consent was recorded (no restriction). */
  consentedPurposes: string[] | null;
  records: ExportedRecord[];
}

export interface AccessLogEntry {
  seq: number;
  ts: string;
  principal: string;
  action: string;
  types: string[];
  purpose: string | null;
  outcome: 'allow' | 'deny' | 'partial';
  reason: string | null;
  requestId: string;
}

export interface SubjectAccessLog {
  tenant: string;
  entries: AccessLogEntry[];
}

export interface EraseResult {
  tenant: string;
  erased: { records: number };
}

export interface ConsentResult {
  tenant: string;
  consentedPurposes: string[] | null;
}
