import type { KeyPurpose } from '../domain/keys';
import type { DataType } from '../domain/types';
import { UpcomingInserts } from './postgres-batch-insert';
import { encodeAuditJson, TOKEN_COLUMNS, tokenParams } from './postgres-rows';
import { DataKeyRow, SubjectDbRow, TokenRow, toDataKey, toSubjectRow, toTokenRecord } from './rows';
import { subjectHandlesOf } from './rules/subjects';
import type { AsyncTransactionOps, KeyRef, Plan } from './transaction-plan';
import type { AuditHead, AuditRow, DataKeyRecord, DataKeyState, ReencryptedRecord, TokenRecord } from './vault-store';

/** A statement kept prepared on each connection under its name: parsed and planned once per connection. */
export interface Named {
  name: string;
  text: string;
}

/** What one write sees: its statements run in the shared transaction (in a savepoint of its own when a write of the batch failed). */
export interface WriteTx {
  rows<R>(sql: string | Named, params?: unknown[]): Promise<R[]>;
  /** How many rows the statement wrote. */
  count(sql: string | Named, params?: unknown[]): Promise<number>;
  /**
   * The data-key rows the transaction holds share-locked, when nothing can release them before
   * COMMIT (no savepoint); undefined in a savepoint, where each lock is taken again.
   */
  readonly sharedKeys?: SharedKeyLocks;
  /** The records the transaction's writes are about to insert, written together (this write registered its own). */
  readonly upcoming?: UpcomingInserts;
  /** Adds to a data key's encryption count, at the end of the transaction. */
  addEncryptions(tenant: string, version: number, n: number): void;
  /** Adds (or with a negative n removes) records to a (tenant, key version) count, at the end of the transaction. */
  addRecords(tenant: string, version: number, n: number): void;
}

/** Data keys with their encryption counts (kept apart, in data_key_usage: see postgres-migrations). */
export const KEY_SELECT = `SELECT k.tenant, k.purpose, k.version, k.state, k.kek_id, k.wrapped, k.created_at,
    k.encryptions + coalesce(u.encryptions, 0) AS encryptions
  FROM data_keys k LEFT JOIN data_key_usage u ON k.purpose = 'data' AND u.tenant = k.tenant AND u.version = k.version`;

export const INSERT_KEY = `INSERT INTO data_keys (tenant, purpose, version, state, kek_id, wrapped, created_at, encryptions)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`;

export const keyParams = (r: DataKeyRecord) => [r.tenant, r.purpose, r.version, r.state, r.kekId, r.wrapped, r.createdAt, r.encryptions];

/**
 * Through tokens_expires_at, earliest expiry first. SKIP LOCKED: rows a concurrent purge, or a
 * tokenize replacing them, holds are theirs; RETURNING reports only the rows deleted here.
 */
export const DELETE_EXPIRED_SQL = `WITH doomed AS (
    SELECT token, tenant FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1
    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
  )
  DELETE FROM tokens t USING doomed d WHERE t.token = d.token AND t.tenant = d.tenant
  RETURNING t.tenant, t.type, t.key_version`;

const INSERT_TOKEN: Named = {
  name: 'pii-vault-insert-token',
  text: `INSERT INTO tokens (${TOKEN_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`,
};

/** The column types of `tokens`, in TOKEN_COLUMNS order, for records sent as one array per column. */
const TOKEN_COLUMN_TYPES = [
  'text',
  'text',
  'text',
  'text',
  'text',
  'int',
  'int',
  'bytea',
  'bytea',
  'bytea',
  'bytea',
  'bytea',
  'bytea',
  'text',
  'bigint',
  'bigint',
];

const INSERT_TOKENS: Named = {
  name: 'pii-vault-insert-tokens',
  text: `INSERT INTO tokens (${TOKEN_COLUMNS})
    SELECT * FROM unnest(${TOKEN_COLUMN_TYPES.map((type, i) => `$${i + 1}::${type}[]`).join(', ')})
    ON CONFLICT DO NOTHING RETURNING tenant, token`,
};

/** Writes the records (tokens distinct) in one statement; returns those written (the others' tokens were taken). */
async function insertAll(tx: WriteTx, records: TokenRecord[]): Promise<Set<TokenRecord>> {
  const params = records.map(tokenParams);
  const columns = TOKEN_COLUMN_TYPES.map((_, column) => params.map((row) => row[column]));
  const written = await tx.rows<{ tenant: string; token: string }>(INSERT_TOKENS, columns);
  const ids = new Set(written.map((row) => JSON.stringify([row.tenant, row.token])));
  return new Set(records.filter((r) => ids.has(JSON.stringify([r.tenant, r.token]))));
}

/** Upcoming inserts (see UpcomingInserts) whose statements run through `tx`, and whose held keys are `tx`'s. */
export const upcomingInserts = (tx: WriteTx) =>
  new UpcomingInserts(
    (records) => insertAll(tx, records),
    (tenant, version) => tx.sharedKeys?.get({ tenant, purpose: 'data', version }) !== undefined,
  );

const SHARE_DATA_KEY: Named = {
  name: 'pii-vault-share-data-key',
  text: `${KEY_SELECT} WHERE k.tenant = $1 AND k.purpose = $2 AND k.version = $3 FOR SHARE OF k`,
};

/**
 * Data-key rows locked FOR SHARE in a transaction without savepoints, as they were read: the lock
 * holds until COMMIT, so no other transaction can have changed them since, and the next write of
 * the batch that locks one (every tokenize does) needs no statement. Forgotten as soon as the
 * transaction runs any other statement on data_keys (it may have changed them itself).
 */
export class SharedKeyLocks {
  private readonly held = new Map<string, DataKeyRecord>();

  /** Tells every statement the transaction runs, before it is sent. */
  seen(sql: string | Named): void {
    if (sql !== SHARE_DATA_KEY && (typeof sql === 'string' ? sql : sql.text).includes('data_keys')) this.held.clear();
  }

  get(key: KeyRef): DataKeyRecord | undefined {
    return this.held.get(JSON.stringify([key.tenant, key.purpose, key.version]));
  }

  set(key: KeyRef, record: DataKeyRecord): void {
    this.held.set(JSON.stringify([key.tenant, key.purpose, key.version]), record);
  }
}

/**
 * The transaction primitives of the shared plans (src/store/rules/) on PostgreSQL, each with the
 * lock TransactionOps names. The per-key counters are handed to the group commit, which applies
 * them at the end of the shared transaction in a fixed order. The audit chain primitives are not
 * here: a plan that reaches the chain head is parked (see runUntilChainHead) and resumed on
 * chainOps once the group commit holds the head.
 */
export function planOps(tx: WriteTx): AsyncTransactionOps {
  const keyOf = async (sql: string | Named, params: unknown[]) => {
    const [row] = await tx.rows<DataKeyRow>(sql, params);
    return row && toDataKey(row);
  };
  const beforeChainHead = (): never => {
    throw new Error('audit chain primitives run once the chain head is locked (chainOps)');
  };
  return {
    // A transaction-scoped advisory lock: a row lock cannot cover a version not inserted yet.
    lockKeyFamily: async (tenant: string, purpose: KeyPurpose) =>
      void (await tx.rows('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`data-key-family/${tenant}/${purpose}`])),
    lockDataKey: async (key: KeyRef, mode: 'share' | 'update') => {
      if (mode === 'update') {
        return keyOf(`${KEY_SELECT} WHERE k.tenant = $1 AND k.purpose = $2 AND k.version = $3 FOR UPDATE OF k`, [
          key.tenant,
          key.purpose,
          key.version,
        ]);
      }
      const held = tx.sharedKeys?.get(key);
      if (held) return held;
      const record = await keyOf(SHARE_DATA_KEY, [key.tenant, key.purpose, key.version]);
      if (record) tx.sharedKeys?.set(key, record);
      return record;
    },
    lockActiveDataKey: (tenant: string, purpose: KeyPurpose) =>
      keyOf(`${KEY_SELECT} WHERE k.tenant = $1 AND k.purpose = $2 AND k.state = 'active' FOR UPDATE OF k`, [tenant, purpose]),
    insertDataKey: async (record: DataKeyRecord) => (await tx.count(INSERT_KEY, keyParams(record))) === 1,
    demoteActiveDataKey: async (tenant: string, purpose: KeyPurpose) =>
      void (await tx.count("UPDATE data_keys SET state = 'decrypt-only' WHERE tenant = $1 AND purpose = $2 AND state = 'active'", [
        tenant,
        purpose,
      ])),
    setDataKeyState: async (key: KeyRef, from: DataKeyState, to: DataKeyState) =>
      (await tx.count(
        `UPDATE data_keys SET state = $1, wrapped = CASE WHEN $1 = 'destroyed' THEN NULL ELSE wrapped END
         WHERE tenant = $2 AND purpose = $3 AND version = $4 AND state = $5`,
        [to, key.tenant, key.purpose, key.version, from],
      )) === 1,
    addEncryptions: async (tenant: string, version: number, seals: number) => tx.addEncryptions(tenant, version, seals),

    countRecordsAt: async (tenant: string, version: number) => {
      const [{ n }] = await tx.rows<{ n: string }>('SELECT count(*) AS n FROM tokens WHERE tenant = $1 AND key_version = $2', [
        tenant,
        version,
      ]);
      return Number(n);
    },
    addRecordCount: async (tenant: string, version: number, delta: number) => tx.addRecords(tenant, version, delta),
    recordsByFingerprint: async (tenant: string, type: DataType, fingerprint: Buffer) =>
      (
        await tx.rows<TokenRow>('SELECT * FROM tokens WHERE tenant = $1 AND type = $2 AND fingerprint = $3 ORDER BY format, preserve', [
          tenant,
          type,
          fingerprint,
        ])
      ).map(toTokenRecord),
    insertRecord: async (record: TokenRecord) => {
      const together = await tx.upcoming?.insert(tx, record);
      if (together) return together;
      // ON CONFLICT waits for a concurrent inserter of the same token or identity, then writes nothing if it committed.
      if ((await tx.count(INSERT_TOKEN, tokenParams(record))) === 1) return 'inserted';
      if (!record.fingerprint) return 'token-taken';
      const identity = await tx.rows(
        'SELECT 1 FROM tokens WHERE tenant = $1 AND type = $2 AND fingerprint = $3 AND format = $4 AND preserve IS NOT DISTINCT FROM $5',
        [record.tenant, record.type, record.fingerprint, record.format, record.preserve],
      );
      return identity.length > 0 ? 'identity-taken' : 'token-taken';
    },
    deleteRecord: async (tenant: string, token: string) => {
      const [row] = await tx.rows<{ key_version: number }>('DELETE FROM tokens WHERE token = $1 AND tenant = $2 RETURNING key_version', [
        token,
        tenant,
      ]);
      return row && { keyVersion: row.key_version };
    },
    deleteExpiredRecords: async (now: number, limit: number) =>
      (await tx.rows<{ tenant: string; type: DataType; key_version: number }>(DELETE_EXPIRED_SQL, [now, limit])).map((r) => ({
        tenant: r.tenant,
        type: r.type,
        keyVersion: r.key_version,
      })),
    replaceCiphertext: async (u: ReencryptedRecord) =>
      (await tx.count(
        `UPDATE tokens SET key_version = $1, binding = $2, preserve = $3, nonce = $4, ciphertext = $5, tag = $6, subject_sealed = $7
         WHERE token = $8 AND tenant = $9 AND key_version = $10 AND binding = $11`,
        [
          u.keyVersion,
          u.binding,
          u.preserve,
          u.nonce,
          u.ciphertext,
          u.tag,
          u.subjectSealed,
          u.token,
          u.tenant,
          u.fromVersion,
          u.fromBinding,
        ],
      )) === 1,
    claimSubject: async (tenant: string, subjectHash: Buffer, handle: Buffer, now: number) => {
      const [row] = await tx.rows<SubjectDbRow>(
        `INSERT INTO subjects (tenant, subject_hash, handle, purposes, created_at, updated_at) VALUES ($1, $2, $3, NULL, $4, $4)
         ON CONFLICT (tenant, subject_hash) DO UPDATE SET handle = subjects.handle RETURNING handle, purposes`,
        [tenant, subjectHash, handle, now],
      );
      return toSubjectRow(row);
    },
    lockSubject: async (tenant: string, subjectHash: Buffer) => {
      const [row] = await tx.rows<SubjectDbRow>(
        'SELECT handle, purposes FROM subjects WHERE tenant = $1 AND subject_hash = $2 FOR UPDATE',
        [tenant, subjectHash],
      );
      return row && toSubjectRow(row);
    },
    setSubjectPurposes: async (tenant: string, subjectHash: Buffer, purposes: readonly string[], now: number) =>
      void (await tx.count('UPDATE subjects SET purposes = $1, updated_at = $2 WHERE tenant = $3 AND subject_hash = $4', [
        JSON.stringify(purposes),
        now,
        tenant,
        subjectHash,
      ])),
    deleteRecordsOfSubject: async (tenant: string, subjectHash: Buffer) =>
      (
        await tx.rows<{ key_version: number }>('DELETE FROM tokens WHERE tenant = $1 AND subject_hash = $2 RETURNING key_version', [
          tenant,
          subjectHash,
        ])
      ).map((r) => ({ keyVersion: r.key_version })),
    deleteSubject: async (tenant: string, subjectHash: Buffer, handle: Buffer) => {
      await tx.count('DELETE FROM subjects WHERE tenant = $1 AND subject_hash = $2', [tenant, subjectHash]);
      await tx.count('DELETE FROM audit_subjects WHERE handle = $1', [handle]);
    },
    addJobProgress: async (jobId: string, done: number, failed: number, now: number) =>
      void (await tx.count('UPDATE jobs SET done = done + $1, failed = failed + $2, updated_at = $3 WHERE id = $4', [
        done,
        failed,
        now,
        jobId,
      ])),

    lockAuditHead: beforeChainHead,
    lastAuditSegment: beforeChainHead,
    insertAuditRow: beforeChainHead,
    countAuditRows: beforeChainHead,
    auditLink: beforeChainHead,
    deleteAuditRows: beforeChainHead,
    insertAuditSegment: beforeChainHead,
  };
}

/** The audit rows of a batch in one statement, with their subject index entries and the chain head moved to the last of them. */
const APPEND_AUDIT_ROWS: Named = {
  name: 'pii-vault-append-audit-rows',
  text: `WITH appended AS (
      INSERT INTO audit (seq, ts, request_id, principal, tenant, action, types, tokens, purpose, outcome, reason, subjects, key_version, prev_hash, hash)
      SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::int[], $14::bytea[], $15::bytea[])
    ), subjects_indexed AS (
      INSERT INTO audit_subjects (handle, seq) SELECT * FROM unnest($18::bytea[], $19::bigint[])
    )
    UPDATE audit_chain_head SET seq = $16, hash = $17 WHERE id = 1`,
};

/** A plan parked at the audit chain head: the group commit resumes it once it holds the head (see GroupCommit). */
export class AwaitsChainHead<T> {
  constructor(readonly resume: (chain: ChainPhase) => Promise<T>) {}
}

/**
 * The end of a group-committed transaction, with the chain head row locked FOR UPDATE: the parked
 * plans resume here one after the other, each chaining its row from the head the one before left.
 * Rows are buffered and written in one statement (with the new head) before any other statement
 * runs, and at the end.
 */
export class ChainPhase {
  private readonly buffered: AuditRow[] = [];

  constructor(
    private readonly tx: WriteTx,
    private head: AuditHead,
  ) {}

  /** The primitives a resumed plan may still call: the chain's, after the counters have been applied. */
  ops(): AsyncTransactionOps {
    const tx = this.tx;
    const statement =
      <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        await this.flush();
        return fn(...args);
      };
    const afterCounters = (): never => {
      throw new Error('a plan must take the audit chain head last');
    };
    return {
      ...planOps(tx),
      lockKeyFamily: afterCounters,
      lockDataKey: afterCounters,
      lockActiveDataKey: afterCounters,
      addEncryptions: afterCounters,
      addRecordCount: afterCounters,
      // The head row covers archived rows too: an emptied log continues from it.
      lockAuditHead: async () => this.head,
      insertAuditRow: async (row: AuditRow) => {
        if (row.seq !== this.head.seq + 1) throw new Error(`audit row ${row.seq} does not follow the head ${this.head.seq}`);
        this.buffered.push(row);
        this.head = { seq: row.seq, hash: row.hash };
      },
      lastAuditSegment: statement(async () => {
        const [row] = await tx.rows<{ seq: string; hash: Buffer }>(
          'SELECT through_seq AS seq, head_hash AS hash FROM audit_segments ORDER BY through_seq DESC LIMIT 1',
        );
        return row && { seq: Number(row.seq), hash: row.hash };
      }),
      countAuditRows: statement(async (fromSeq: number, throughSeq: number) => {
        const [{ n }] = await tx.rows<{ n: string }>('SELECT count(*) AS n FROM audit WHERE seq BETWEEN $1 AND $2', [fromSeq, throughSeq]);
        return Number(n);
      }),
      auditLink: statement(async (seq: number) => {
        const [row] = await tx.rows<{ prev_hash: Buffer; hash: Buffer }>('SELECT prev_hash, hash FROM audit WHERE seq = $1', [seq]);
        return row && { prevHash: row.prev_hash, hash: row.hash };
      }),
      deleteAuditRows: statement(
        async (fromSeq: number, throughSeq: number) =>
          void (await tx.count('DELETE FROM audit WHERE seq BETWEEN $1 AND $2', [fromSeq, throughSeq])),
      ),
      insertAuditSegment: statement(
        async (s) =>
          void (await tx.count(
            `INSERT INTO audit_segments (through_seq, from_seq, prev_hash, head_hash, archived_at, key_version, mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7)`,
            [s.throughSeq, s.fromSeq, s.prevHash, s.headHash, s.archivedAt, s.keyVersion, s.mac],
          )),
      ),
    };
  }

  /** Writes the buffered rows and moves the head row to the last of them, in one statement. */
  async flush(): Promise<void> {
    if (this.buffered.length === 0) return;
    const rows = this.buffered.splice(0);
    const column = <K extends keyof AuditRow>(key: K) => rows.map((r) => r[key]);
    const indexed = rows.flatMap((r) => subjectHandlesOf(r.subjects).map((handle) => ({ handle, seq: r.seq })));
    await this.tx.count(APPEND_AUDIT_ROWS, [
      column('seq'),
      column('ts'),
      column('requestId'),
      column('principal'),
      column('tenant'),
      column('action'),
      rows.map((r) => encodeAuditJson(r.types)),
      rows.map((r) => encodeAuditJson(r.tokens)),
      column('purpose'),
      column('outcome'),
      column('reason'),
      rows.map((r) => encodeAuditJson(r.subjects)),
      column('keyVersion'),
      column('prevHash'),
      column('hash'),
      this.head.seq,
      this.head.hash,
      indexed.map((i) => i.handle),
      indexed.map((i) => i.seq),
    ]);
  }
}

/**
 * Runs a plan's steps on `ops` until it asks for the audit chain head; from there it is parked
 * (AwaitsChainHead) for the group commit to resume at the end of the transaction. A primitive's
 * failure is thrown into the plan, as runPlanAsync does.
 */
export async function runUntilChainHead<T>(plan: Plan<T>, ops: AsyncTransactionOps): Promise<T | AwaitsChainHead<T>> {
  let next = plan.next();
  while (!next.done) {
    if (next.value.op === 'lockAuditHead') {
      return new AwaitsChainHead((chain) => drive(plan, chain.ops(), next));
    }
    next = await step(plan, ops, next.value);
  }
  return next.value;
}

async function drive<T>(plan: Plan<T>, ops: AsyncTransactionOps, first: IteratorResult<PlanStep<T>, T>): Promise<T> {
  let next = first;
  while (!next.done) next = await step(plan, ops, next.value);
  return next.value;
}

type PlanStep<T> = Plan<T> extends Generator<infer S, T, unknown> ? S : never;

async function step<T>(plan: Plan<T>, ops: AsyncTransactionOps, request: PlanStep<T>): Promise<IteratorResult<PlanStep<T>, T>> {
  let result: unknown;
  try {
    result = await (ops[request.op] as (...args: unknown[]) => Promise<unknown>).apply(ops, request.args);
  } catch (err) {
    return plan.throw(err);
  }
  return plan.next(result);
}
