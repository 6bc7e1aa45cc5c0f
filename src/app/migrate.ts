import { existsSync } from 'node:fs';
import { sameRecord } from '../service/deterministic';
import { IntegrityError, open } from '../crypto/aead';
import { VaultConfig, dataPath, loadConfig } from '../config';
import { context } from '../keys/key-manager';
import { recordAad } from '../service/record-crypto';
import { redactUrl } from '../store/postgres-errors';
import { TableCounts, copySqliteToPostgres } from '../store/sqlite-to-postgres';
import { copySubjectKeysToPostgres } from '../store/subject-keys-to-postgres';
import type { DataKeyRecord } from '../domain/keys';
import type { TokenRecord } from '../store/vault-store';
import { OpenedVault, openVault } from './open-vault';

/** Records picked across the whole source and checked value by value on both sides. */
const SAMPLE_SIZE = 200;

interface MigrateSummary {
  ok: boolean;
  source: string;
  /** The target database, its password redacted. */
  target: string;
  tables: TableCounts;
  /** Sampled records: read back from the target identical, and opening to the same value as on the source. */
  sample: { checked: number; matched: number; mismatched: number; unreadableOnBoth: number };
  audit: { ok: boolean; rows: number; archivedThrough: number; reason?: string };
}

/**
 * `pii-vault migrate`: copies the data dir's embedded SQLite vault into an empty PostgreSQL
 * database (see copySqliteToPostgres: one transaction, counted per table before it commits), then
 * opens the copy as a vault and checks it: a sample of records decrypted on both sides and compared,
 * and the whole audit chain verified on the target. Nothing in the data dir is written: the
 * operator points the vault at the database afterwards (PII_VAULT_DATABASE_URL or database.url).
 */
export async function migrateVault(dataDir: string, targetUrl: string): Promise<MigrateSummary> {
  const config = loadConfig(dataDir);
  if (config.database.url) {
    throw new Error(
      'this vault is configured for PostgreSQL already (database.url or PII_VAULT_DATABASE_URL); migrate copies the embedded SQLite vault',
    );
  }
  const sourceFile = dataPath(config, config.databaseFile);
  if (!existsSync(sourceFile)) throw new Error(`no vault database at ${sourceFile}`);
  const database = { ...config.database, url: targetUrl };
  const keysFile = subjectKeysToCopy(config, targetUrl);
  // The keys first: a key database that refuses them leaves the target untouched (a rerun copies again).
  const keys = keysFile && (await copySubjectKeysToPostgres(keysFile, { ...database, url: config.subjectKeys.databaseUrl! }));
  const copied = await copySqliteToPostgres(sourceFile, database, { sampleSize: SAMPLE_SIZE });
  if (keys) copied.counts.subject_keys = keys;
  const target: VaultConfig = { ...config, database };
  const opened = await openVault(target);
  try {
    const sample = await compareSample(opened, copied.sample, copied.sourceKeys);
    const verified = await opened.audit.verify({ full: true });
    const audit = verified.ok
      ? { ok: true, rows: verified.rows, archivedThrough: verified.archivedThrough }
      : {
          ok: false,
          rows: verified.rows,
          archivedThrough: verified.archivedThrough,
          reason: `row #${verified.firstBadSeq}: ${verified.reason}`,
        };
    return {
      ok: audit.ok && sample.mismatched === 0,
      source: sourceFile,
      target: redactUrl(targetUrl),
      tables: copied.counts,
      sample,
      audit,
    };
  } finally {
    await opened.close();
  }
}

/**
 * The SQLite subject key file to copy along, if the vault has one: it goes to the database of
 * subjectKeys.databaseUrl (PII_VAULT_SUBJECT_KEYS_DATABASE_URL), which a PostgreSQL vault with
 * per-subject keys needs, and which must not be the target (see open-store.ts). Checked before
 * anything is copied.
 */
function subjectKeysToCopy(config: VaultConfig, targetUrl: string): string | undefined {
  const file = dataPath(config, config.subjectKeys.path);
  const { databaseUrl, enabled } = config.subjectKeys;
  if (databaseUrl === targetUrl) {
    throw new Error('subjectKeys.databaseUrl must name a database other than the target: the keys must live outside the vault database');
  }
  if (!databaseUrl && (existsSync(file) || enabled.length > 0)) {
    throw new Error(
      `this vault has per-subject keys (${file}): set PII_VAULT_SUBJECT_KEYS_DATABASE_URL (or subjectKeys.databaseUrl) to an empty database of their own, apart from the target, and run migrate again`,
    );
  }
  return databaseUrl && existsSync(file) ? file : undefined;
}

/**
 * Each sampled source record must be stored identically in the target, and open to the same value
 * under the source's wrapped data key as under the target's (both unwrapped by the configured KEK).
 * Records neither side can open (a destroyed key) count apart.
 */
async function compareSample(opened: OpenedVault, sample: TokenRecord[], sourceKeys: DataKeyRecord[]): Promise<MigrateSummary['sample']> {
  const result = { checked: sample.length, matched: 0, mismatched: 0, unreadableOnBoth: 0 };
  const found = await opened.store.findTokens(sample.map((r) => r.token));
  for (const record of sample) {
    const copy = found.get(record.token)?.find((r) => r.tenant === record.tenant);
    const sourceKey = sourceKeys.find((k) => k.tenant === record.tenant && k.purpose === 'data' && k.version === record.keyVersion);
    const before = openWith(record, sourceKey && (await unwrapSourceKey(opened, sourceKey)));
    const targetKey = copy && (await opened.keys.keyVersion(copy.tenant, 'data', copy.keyVersion).catch(() => undefined));
    const after = copy && openWith(copy, targetKey);
    if (copy && sameRecord(record, copy) && before && after && before.equals(after)) result.matched++;
    else if (copy && sameRecord(record, copy) && !before && !after) result.unreadableOnBoth++;
    else result.mismatched++;
  }
  return result;
}

async function unwrapSourceKey(opened: OpenedVault, key: DataKeyRecord): Promise<Buffer | undefined> {
  if (!key.wrapped || key.state === 'destroyed') return undefined;
  return opened.keks.provider
    .unwrap({ kekId: key.kekId, blob: key.wrapped }, context(key.tenant, key.purpose, key.version))
    .catch(() => undefined);
}

function openWith(record: TokenRecord, key: Buffer | undefined): Buffer | undefined {
  if (!key) return undefined;
  try {
    return open(key, record, recordAad(record));
  } catch (err) {
    if (err instanceof IntegrityError) return undefined;
    throw err;
  }
}
