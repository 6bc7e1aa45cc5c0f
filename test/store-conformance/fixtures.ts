import { expect } from 'chai';
import {
  AuditRow,
  DataKeyRecord,
  DataKeyState,
  GENESIS_HASH,
  InsertHooks,
  JobRecord,
  PendingAudit,
  ReencryptedRecord,
  TokenRecord,
  VaultStore,
} from '../../src/store/vault-store';
import { auditEntry, testSealer } from '../helpers/store-fixtures';

export const pending = (tenant: string | null = 't'): PendingAudit => ({ entry: { ...auditEntry(), tenant }, sealer: testSealer });

export const dataKey = (version: number, state: DataKeyState = 'active', tenant = 't'): DataKeyRecord => ({
  tenant,
  purpose: 'data',
  version,
  state,
  kekId: 'local:v1',
  wrapped: Buffer.alloc(61, version),
  createdAt: 0,
  encryptions: 0,
});

export const record = (token: string, options: Partial<TokenRecord> = {}): TokenRecord => ({
  token,
  tenant: 't',
  type: 'text',
  format: 'random',
  preserve: 'none',
  binding: 2,
  keyVersion: 1,
  nonce: Buffer.alloc(12, 1),
  ciphertext: Buffer.from(`ciphertext of ${token}`),
  tag: Buffer.alloc(16, 2),
  fingerprint: null,
  subjectHash: null,
  subjectSealed: null,
  metadata: null,
  createdAt: 0,
  expiresAt: null,
  ...options,
});

/** Hooks for records that never collide and are not deterministic. */
/** A running re-encryption job of tenant t. */
export const job = (id: string, options: Partial<JobRecord> = {}): JobRecord => ({
  id,
  kind: 'reencrypt',
  tenants: ['t'],
  state: 'running',
  total: 0,
  done: 0,
  failed: 0,
  requestedBy: 'p',
  createdAt: 1,
  updatedAt: 1,
  finishedAt: null,
  error: null,
  ...options,
});

/** A re-encryption of record `token` of tenant t from data key version 1 to 2 (binding 2). */
export const reencrypted = (token: string, options: Partial<ReencryptedRecord> = {}): ReencryptedRecord => ({
  token,
  tenant: 't',
  fromVersion: 1,
  fromBinding: 2,
  keyVersion: 2,
  binding: 2,
  preserve: 'none',
  nonce: Buffer.alloc(12, 5),
  ciphertext: Buffer.from(`new ${token}`),
  tag: Buffer.alloc(16, 5),
  subjectSealed: null,
  ...options,
});

/** Resolves after `n` turns of the event loop (to interleave two connections' calls). */
export const turns = (n: number) =>
  Array.from({ length: n }).reduce<Promise<void>>((p) => p.then(() => new Promise(setImmediate)), Promise.resolve());

export const plainHooks: InsertHooks = {
  retokenize: () => {
    throw new Error('unexpected token collision');
  },
  resolveExisting: () => {
    throw new Error('unexpected deterministic record');
  },
};

/** Deterministic dedupe as the service does it, minus vetting: reuse any stored record. */
export const reuseHooks: InsertHooks = {
  ...plainHooks,
  resolveExisting: (_index, existing) => ({ reuse: existing[0].token }),
};

export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Every stored audit row, checked link by link: seq 1.., each chained from the one before and sealed. */
export async function expectIntactChain(store: VaultStore, fromSeq = 1, prevHash: Buffer = GENESIS_HASH): Promise<AuditRow[]> {
  const rows = await store.auditRows(fromSeq - 1, 1_000_000);
  let prev: Buffer = prevHash;
  rows.forEach((row, i) => {
    expect(row.seq, 'no gap, no duplicate').to.equal(fromSeq + i);
    expect(row.prevHash.equals(prev), `row ${row.seq} chains from the row before`).to.equal(true);
    expect(row.hash.equals(testSealer.seal(prev, row.seq, row, row.keyVersion)), `row ${row.seq} is sealed`).to.equal(true);
    prev = row.hash;
  });
  return rows;
}

/** The records each token names in tenant `tenant`, counted per key version: what the kept counts must equal. */
export async function countedRecords(store: VaultStore, tokens: Iterable<string>, tenant = 't'): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const found = await store.findTokens([...new Set(tokens)]);
  for (const records of found.values()) {
    for (const r of records.filter((r) => r.tenant === tenant)) {
      const key = `${r.tenant}/${r.keyVersion}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

export async function keptCounts(store: VaultStore, tenant = 't'): Promise<Map<string, number>> {
  return new Map([...(await store.recordCountsByKey())].filter(([key]) => key.startsWith(`${tenant}/`)));
}
