import type Database from 'better-sqlite3';
import type { DataType } from '../../domain/types';
import type { TransactionOps } from '../transaction-plan';
import type { ExpiredCount, StoredRecord, TokenRecord } from '../vault-store';
import { RECORDS_WITH_SUBJECT, StoredTokenRow, TokenRow, toStoredRecord, toTokenRecord } from '../rows';
import { toTokenParams } from './rows';

type TokenOps = Pick<
  TransactionOps,
  | 'recordsByFingerprint'
  | 'insertRecord'
  | 'deleteRecord'
  | 'deleteExpiredRecords'
  | 'replaceCiphertext'
  | 'countRecordsAt'
  | 'addRecordCount'
>;

/** Through tokens_expires_at (the partial index: `expires_at <= ?` implies IS NOT NULL), earliest expiry first. */
export const DELETE_EXPIRED_SQL = `DELETE FROM tokens WHERE (token, tenant) IN (
    SELECT token, tenant FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?
  ) RETURNING tenant, type, key_version`;

/** The records aggregate: tokens and their per-version record counts. */
export function tokenStatements(db: Database.Database) {
  const s = {
    insert: db.prepare(
      `INSERT INTO tokens (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, fingerprint, subject_hash, subject_sealed, metadata, created_at, expires_at)
       VALUES (@token, @tenant, @type, @format, @preserve, @binding, @keyVersion, @nonce, @ciphertext, @tag, @fingerprint, @subjectHash, @subjectSealed, @metadata, @createdAt, @expiresAt)
       ON CONFLICT (token, tenant) DO NOTHING`,
    ),
    byFingerprint: db.prepare('SELECT * FROM tokens WHERE tenant = ? AND type = ? AND fingerprint = ?'),
    deleteOfTenant: db.prepare('DELETE FROM tokens WHERE token = ? AND tenant = ? RETURNING key_version'),
    addRecords: db.prepare(
      `INSERT INTO record_counts (tenant, key_version, records) VALUES (?, ?, ?)
       ON CONFLICT (tenant, key_version) DO UPDATE SET records = records + excluded.records`,
    ),
    removeRecords: db.prepare('UPDATE record_counts SET records = records - ? WHERE tenant = ? AND key_version = ?'),
    byToken: db.prepare(`${RECORDS_WITH_SUBJECT} WHERE t.token = ?`),
    countsByKey: db.prepare('SELECT tenant, key_version AS version, records AS n FROM record_counts WHERE records > 0'),
    countAtVersion: db.prepare('SELECT count(*) AS n FROM tokens WHERE tenant = ? AND key_version = ?'),
    behind: db.prepare('SELECT * FROM tokens WHERE tenant = ? AND (key_version != ? OR binding < ?) AND token > ? ORDER BY token LIMIT ?'),
    deleteExpired: db.prepare(DELETE_EXPIRED_SQL),
    expiredCounts: db.prepare(
      `SELECT tenant, type, count(*) AS records FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?
       GROUP BY tenant, type`,
    ),
    replaceCiphertext: db.prepare(
      `UPDATE tokens SET key_version = @keyVersion, binding = @binding, preserve = @preserve, nonce = @nonce, ciphertext = @ciphertext,
         tag = @tag, subject_sealed = @subjectSealed
       WHERE token = @token AND tenant = @tenant AND key_version = @fromVersion AND binding = @fromBinding`,
    ),
  };

  const recordsByFingerprint = (tenant: string, type: DataType, fingerprint: Buffer) =>
    (s.byFingerprint.all(tenant, type, fingerprint) as TokenRow[]).map(toTokenRecord);

  const ops: TokenOps = {
    recordsByFingerprint,
    insertRecord(record) {
      try {
        return s.insert.run(toTokenParams(record)).changes === 1 ? 'inserted' : 'token-taken';
      } catch (err) {
        // Only the deterministic identity index is left to conflict: (token, tenant) does nothing.
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') return 'identity-taken';
        throw err;
      }
    },
    deleteRecord(tenant, token) {
      const row = s.deleteOfTenant.get(token, tenant) as { key_version: number } | undefined;
      return row && { keyVersion: row.key_version };
    },
    deleteExpiredRecords: (now, limit) =>
      (s.deleteExpired.all(now, limit) as { tenant: string; type: DataType; key_version: number }[]).map((r) => ({
        tenant: r.tenant,
        type: r.type,
        keyVersion: r.key_version,
      })),
    replaceCiphertext: (update) => s.replaceCiphertext.run(update).changes === 1,
    countRecordsAt: (tenant, version) => (s.countAtVersion.get(tenant, version) as { n: number }).n,
    addRecordCount(tenant, version, delta) {
      if (delta > 0) s.addRecords.run(tenant, version, delta);
      else if (delta < 0) s.removeRecords.run(-delta, tenant, version);
    },
  };

  return {
    ops,
    recordsByFingerprint,
    recordsOfToken: (token: string): StoredRecord[] => (s.byToken.all(token) as StoredTokenRow[]).map(toStoredRecord),
    recordsBehind: (tenant: string, activeVersion: number, binding: number, afterToken: string, limit: number): TokenRecord[] =>
      (s.behind.all(tenant, activeVersion, binding, afterToken, limit) as TokenRow[]).map(toTokenRecord),
    expiredCounts: (now: number): ExpiredCount[] => s.expiredCounts.all(now) as ExpiredCount[],
    recordCounts: () => s.countsByKey.all() as { tenant: string; version: number; n: number }[],
  };
}
