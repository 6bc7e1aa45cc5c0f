import type { DataKeyRecord } from '../../src/domain/keys';
import { AuditEntry, AuditSealer, TokenRecord } from '../../src/store/vault-store';

/** Store-level fixtures: an audit sealer and rows that need no real keys (the store never opens them). */
export const testSealer: AuditSealer = {
  keyVersion: 1,
  seal: (prev, seq) => Buffer.concat([prev.subarray(0, 28), Buffer.from([0, 0, 0, seq])]),
};

export const auditEntry = (): AuditEntry => ({
  ts: new Date().toISOString(),
  requestId: 'r',
  principal: 'p',
  tenant: 't',
  action: 'tokenize',
  types: ['text'],
  tokens: [],
  purpose: null,
  outcome: 'allow',
  reason: null,
  subjects: [],
});

export const tokenRecord = (token: string, keyVersion = 1, fill = 0): TokenRecord => ({
  token,
  tenant: 't',
  type: 'text',
  format: 'random',
  preserve: 'none',
  binding: 2,
  keyVersion,
  nonce: Buffer.alloc(12, fill),
  ciphertext: Buffer.from('c'),
  tag: Buffer.alloc(16, fill),
  fingerprint: null,
  subjectHash: null,
  subjectSealed: null,
  metadata: null,
  createdAt: 0,
  expiresAt: null,
});

export const activeDataKey = (): DataKeyRecord => ({
  tenant: 't',
  purpose: 'data',
  version: 1,
  state: 'active',
  kekId: 'local:v1',
  wrapped: Buffer.alloc(61),
  createdAt: 0,
  encryptions: 0,
});
