import Database from 'better-sqlite3';
import { Client } from 'pg';
import type { DataKeyRecord } from '../domain/keys';
import { redactUrl, toStoreError } from './postgres-errors';
import { encodeAuditJson } from './postgres-rows';
import { PostgresStore, PostgresStoreOptions } from './postgres-store';
import { SQLITE_MIGRATIONS } from './sqlite-migrations';
import { AuditDbRow, DataKeyRow, TokenRow, toAuditRow, toDataKey, toTokenRecord } from './rows';
import type { TokenRecord } from './vault-store';

/** Rows per read of the source and per multi-row INSERT on the target: memory stays bounded whatever the vault's size. */
const BATCH_ROWS = 500;

/** How one table is copied: the same column names on both sides, read in key order (keyset pages). */
interface TableCopy {
  table: string;
  columns: string[];
  /** The primary key, in the order pages are read. */
  key: string[];
  /** A source row as the target's column values (most are the same bytes). */
  convert?: (row: Record<string, unknown>) => unknown[];
}

const TOKEN_COLUMNS = [
  'token',
  'tenant',
  'type',
  'format',
  'preserve',
  'binding',
  'key_version',
  'nonce',
  'ciphertext',
  'tag',
  'fingerprint',
  'subject_hash',
  'subject_sealed',
  'metadata',
  'created_at',
  'expires_at',
];
const AUDIT_COLUMNS = [
  'seq',
  'ts',
  'request_id',
  'principal',
  'tenant',
  'action',
  'types',
  'tokens',
  'purpose',
  'outcome',
  'reason',
  'subjects',
  'key_version',
  'prev_hash',
  'hash',
];

const TABLES: TableCopy[] = [
  {
    table: 'data_keys',
    columns: ['tenant', 'purpose', 'version', 'state', 'kek_id', 'wrapped', 'created_at', 'encryptions'],
    key: ['tenant', 'purpose', 'version'],
  },
  { table: 'tokens', columns: TOKEN_COLUMNS, key: ['token', 'tenant'] },
  { table: 'record_counts', columns: ['tenant', 'key_version', 'records'], key: ['tenant', 'key_version'] },
  {
    table: 'subjects',
    columns: ['tenant', 'subject_hash', 'handle', 'purposes', 'created_at', 'updated_at'],
    key: ['tenant', 'subject_hash'],
  },
  { table: 'audit_subjects', columns: ['handle', 'seq'], key: ['handle', 'seq'] },
  {
    table: 'jobs',
    columns: [
      'id',
      'kind',
      'tenants',
      'state',
      'total',
      'done',
      'failed',
      'requested_by',
      'created_at',
      'updated_at',
      'finished_at',
      'error',
    ],
    key: ['id'],
  },
  {
    table: 'audit',
    columns: AUDIT_COLUMNS,
    key: ['seq'],
    // SQLite may store long lists deflated (audit-list-codec); PostgreSQL stores JSON text. The row's MAC covers the lists, not their encoding.
    convert: (row) => {
      const audit = toAuditRow(row as unknown as AuditDbRow);
      return AUDIT_COLUMNS.map((c) => (c === 'types' || c === 'tokens' || c === 'subjects' ? encodeAuditJson(audit[c]) : row[c]));
    },
  },
  {
    table: 'audit_segments',
    columns: ['through_seq', 'from_seq', 'prev_hash', 'head_hash', 'archived_at', 'key_version', 'mac'],
    key: ['through_seq'],
  },
  { table: 'audit_checkpoint', columns: ['id', 'seq', 'hash', 'key_version', 'created_at', 'mac'], key: ['id'] },
];

/** Rows per table, as counted on each side inside the copy (the target's before its commit). */
export type TableCounts = Record<string, { source: number; target: number }>;

interface CopyResult {
  counts: TableCounts;
  /** Every data key of the source, as stored there (wrapped), for decrypting the sample on the source's side. */
  sourceKeys: DataKeyRecord[];
  /** Records picked uniformly from the source while copying (reservoir sampling), as stored there. */
  sample: TokenRecord[];
}

/** The copy refused or failed its own check (as opposed to a database that cannot be reached). */
class MigrationError extends Error {}

/** The target database already holds data: migrate copies only into an empty one. */
class TargetNotEmptyError extends MigrationError {
  constructor(url: string, tables: string[]) {
    super(`database ${redactUrl(url)} is not empty (rows in ${tables.join(', ')}); migrate copies only into an empty database`);
  }
}

/**
 * Copies an embedded SQLite vault file into an empty PostgreSQL database, as one transaction on
 * the target: either the whole vault is there and counted, or nothing is (a failed copy can simply
 * be run again). The source is opened read-only and read in one snapshot, in pages of BATCH_ROWS.
 * The target's tables are locked for the copy, so a concurrent `init`, `serve` or second migrate
 * waits and then finds the database taken.
 */
export async function copySqliteToPostgres(
  sourceFile: string,
  target: PostgresStoreOptions,
  options: { sampleSize: number },
): Promise<CopyResult> {
  const source = openSource(sourceFile);
  try {
    // Creates (or checks) the schema under the store's own migration lock.
    await (await PostgresStore.open(target)).close();
    // The copy is one long transaction: its connection has no statement or idle timeout.
    const client = new Client({ connectionString: target.url, connectionTimeoutMillis: target.connectTimeoutMs });
    client.on('error', () => undefined); // reported by the failing query
    try {
      await client.connect();
      await client.query('BEGIN');
      try {
        const result = await copyInto(source, client, target.url, options);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } catch (err) {
      throw err instanceof MigrationError || err instanceof Database.SqliteError ? err : toStoreError(err);
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    source.close();
  }
}

/** The source, read-only (nothing is written to it, its WAL is not checkpointed), at the schema this release writes. */
function openSource(file: string): Database.Database {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const applied = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
    const current = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]!.version;
    if (applied.v !== current) {
      throw new Error(
        `the vault database ${file} has schema version ${applied.v ?? 0}, this release writes ${current}: start the vault once with this release, then migrate`,
      );
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

async function copyInto(source: Database.Database, client: Client, url: string, options: { sampleSize: number }): Promise<CopyResult> {
  await client.query(`LOCK TABLE ${TABLES.map((t) => t.table).join(', ')}, audit_chain_head IN SHARE ROW EXCLUSIVE MODE`);
  const taken: string[] = [];
  for (const { table } of TABLES) {
    if ((await client.query(`SELECT 1 FROM ${table} LIMIT 1`)).rowCount) taken.push(table);
  }
  if (taken.length) throw new TargetNotEmptyError(url, taken);

  // One read transaction: every page comes from the same snapshot, whatever a running vault writes meanwhile.
  source.exec('BEGIN');
  try {
    const sampler = new Reservoir<TokenRecord>(options.sampleSize);
    const sourceKeys: DataKeyRecord[] = [];
    const counts: TableCounts = {};
    for (const spec of TABLES) {
      await copyTable(source, client, spec, (row) => {
        if (spec.table === 'tokens') sampler.offer(() => toTokenRecord(row as unknown as TokenRow));
        if (spec.table === 'data_keys') sourceKeys.push(toDataKey(row as unknown as DataKeyRow));
      });
      counts[spec.table] = {
        source: (source.prepare(`SELECT count(*) AS n FROM ${spec.table}`).get() as { n: number }).n,
        target: Number((await client.query(`SELECT count(*) AS n FROM ${spec.table}`)).rows[0].n),
      };
    }
    await setChainHead(source, client);
    const short = Object.entries(counts).filter(([, c]) => c.source !== c.target);
    if (short.length) throw new MigrationError(`copy incomplete: ${short.map(([t, c]) => `${t} ${c.target}/${c.source}`).join(', ')}`);
    return { counts, sourceKeys, sample: sampler.items };
  } finally {
    source.exec('COMMIT');
  }
}

async function copyTable(
  source: Database.Database,
  client: Client,
  spec: TableCopy,
  onRow: (row: Record<string, unknown>) => void,
): Promise<void> {
  const keyList = spec.key.join(', ');
  const first = source.prepare(`SELECT ${spec.columns.join(', ')} FROM ${spec.table} ORDER BY ${keyList} LIMIT ?`);
  const next = source.prepare(
    `SELECT ${spec.columns.join(', ')} FROM ${spec.table} WHERE (${keyList}) > (${spec.key.map(() => '?').join(', ')}) ORDER BY ${keyList} LIMIT ?`,
  );
  let after: unknown[] | undefined;
  for (;;) {
    const rows = (after ? next.all(...after, BATCH_ROWS) : first.all(BATCH_ROWS)) as Record<string, unknown>[];
    if (rows.length === 0) return;
    rows.forEach(onRow);
    const params = rows.flatMap((row) => (spec.convert ? spec.convert(row) : spec.columns.map((c) => row[c])));
    const width = spec.columns.length;
    const values = rows.map((_, r) => `(${spec.columns.map((_c, c) => `$${r * width + c + 1}`).join(', ')})`).join(', ');
    await client.query(`INSERT INTO ${spec.table} (${spec.columns.join(', ')}) VALUES ${values}`, params);
    const last = rows[rows.length - 1]!;
    after = spec.key.map((k) => last[k]);
    if (rows.length < BATCH_ROWS) return;
  }
}

/** Where the copied chain ends: its newest stored row, else the last archived segment, else genesis. */
async function setChainHead(source: Database.Database, client: Client): Promise<void> {
  const row = source.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer } | undefined;
  const segment = source
    .prepare('SELECT through_seq AS seq, head_hash AS hash FROM audit_segments ORDER BY through_seq DESC LIMIT 1')
    .get() as { seq: number; hash: Buffer } | undefined;
  const head = row && (!segment || row.seq > segment.seq) ? row : segment;
  if (head) await client.query('UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1', [head.seq, head.hash]);
}

/** A uniform sample of at most `size` items from a stream of unknown length, in bounded memory. */
class Reservoir<T> {
  readonly items: T[] = [];
  private seen = 0;

  constructor(private readonly size: number) {}

  offer(make: () => T): void {
    this.seen++;
    if (this.items.length < this.size) this.items.push(make());
    else {
      const slot = Math.floor(Math.random() * this.seen);
      if (slot < this.size) this.items[slot] = make();
    }
  }
}
