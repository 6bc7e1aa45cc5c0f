/** Versioned schema changes, applied in order at start; never edit one that has shipped. */
export const SQLITE_MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
  {
    version: 1,
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

      CREATE TABLE data_keys (
        tenant TEXT NOT NULL,
        purpose TEXT NOT NULL CHECK (purpose IN ('data', 'fingerprint', 'audit')),
        version INTEGER NOT NULL CHECK (version >= 1),
        state TEXT NOT NULL CHECK (state IN ('active', 'decrypt-only', 'retired', 'destroyed')),
        kek_id TEXT NOT NULL,
        wrapped BLOB,
        created_at INTEGER NOT NULL,
        encryptions INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, purpose, version)
      );
      CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant, purpose) WHERE state = 'active';

      CREATE TABLE tokens (
        token TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL,
        fingerprint BLOB,
        subject_hash BLOB,
        subject_sealed BLOB,
        metadata TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER
      );
      CREATE UNIQUE INDEX tokens_fingerprint ON tokens (tenant, type, fingerprint) WHERE fingerprint IS NOT NULL;
      CREATE INDEX tokens_subject ON tokens (tenant, subject_hash) WHERE subject_hash IS NOT NULL;
      CREATE INDEX tokens_key_version ON tokens (tenant, key_version);

      CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        request_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        tenant TEXT,
        action TEXT NOT NULL,
        types TEXT NOT NULL,
        tokens TEXT NOT NULL,
        purpose TEXT,
        outcome TEXT NOT NULL,
        reason TEXT,
        subjects TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
      );
    `,
  },
  {
    version: 2,
    sql: `
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        tenants TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
        total INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        requested_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER,
        error TEXT
      );
    `,
  },
  {
    // Record counts per (tenant, data key version), adjusted by the store in the transaction of
    // every insert, delete and re-encryption, so `GET /v1/keys` reads them instead of counting
    // every record; and an index for tenant-scoped audit reads.
    version: 3,
    sql: `
      CREATE TABLE record_counts (
        tenant TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        records INTEGER NOT NULL CHECK (records >= 0),
        PRIMARY KEY (tenant, key_version)
      ) WITHOUT ROWID;
      INSERT INTO record_counts (tenant, key_version, records)
        SELECT tenant, key_version, count(*) FROM tokens GROUP BY tenant, key_version;

      CREATE INDEX audit_tenant_seq ON audit (tenant, seq);
    `,
  },
  {
    // Audit verification checkpoint (issue 10, item 11): at most one row, MACed under the audit key;
    // archived (exported and pruned) segments of the chain (item 13), each MACed under the audit key.
    version: 4,
    sql: `
      CREATE TABLE audit_segments (
        through_seq INTEGER PRIMARY KEY,
        from_seq INTEGER NOT NULL,
        prev_hash BLOB NOT NULL,
        head_hash BLOB NOT NULL,
        archived_at TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        mac BLOB NOT NULL
      );
      CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        key_version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        mac BLOB NOT NULL
      );
    `,
  },
  {
    // Token spaces per tenant: the key becomes (token, tenant) (token first, so a lookup by token
    // alone still uses it, and time-ordered tokens still append). Records gain their binding (rows
    // written before are binding 1) and what their token preserves (unknown, so null, before).
    // Deterministic identity covers format and preserve. SQLite cannot change a primary key in
    // place: the table is rebuilt and its indexes recreated.
    version: 5,
    sql: `
      CREATE TABLE tokens_v5 (
        token TEXT NOT NULL,
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL,
        preserve TEXT,
        binding INTEGER NOT NULL,
        key_version INTEGER NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL,
        fingerprint BLOB,
        subject_hash BLOB,
        subject_sealed BLOB,
        metadata TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (token, tenant)
      );
      INSERT INTO tokens_v5 (token, tenant, type, format, preserve, binding, key_version, nonce, ciphertext, tag, fingerprint,
                             subject_hash, subject_sealed, metadata, created_at, expires_at)
        SELECT token, tenant, type, format, NULL, 1, key_version, nonce, ciphertext, tag, fingerprint,
               subject_hash, subject_sealed, metadata, created_at, expires_at FROM tokens;
      DROP TABLE tokens;
      ALTER TABLE tokens_v5 RENAME TO tokens;
      CREATE UNIQUE INDEX tokens_fingerprint ON tokens (tenant, type, fingerprint, format, preserve) WHERE fingerprint IS NOT NULL;
      CREATE INDEX tokens_subject ON tokens (tenant, subject_hash) WHERE subject_hash IS NOT NULL;
      CREATE INDEX tokens_key_version ON tokens (tenant, key_version);
    `,
  },
  {
    // Re-encryption job leases (the seam's leaseJob): which instance runs a job, and until when.
    version: 9,
    sql: `
      ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
      ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
    `,
  },
  {
    // Data subjects: a random handle per (tenant, subject HMAC) that audit rows name instead of the
    // HMAC (erasing the row unlinks them), and the purposes the subject consented to (JSON, null =
    // none recorded). audit_subjects indexes audit rows by the handles they name. Existing subjects
    // get handles; rows written before keep their HMACs and are indexed under the handle where
    // their subject list is JSON text (lists long enough to be stored deflated are not).
    version: 10,
    sql: `
      CREATE TABLE subjects (
        tenant TEXT NOT NULL,
        subject_hash BLOB NOT NULL,
        handle BLOB NOT NULL UNIQUE,
        purposes TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, subject_hash)
      );
      INSERT INTO subjects (tenant, subject_hash, handle, purposes, created_at, updated_at)
        SELECT tenant, subject_hash, randomblob(16), NULL, min(created_at), min(created_at)
        FROM tokens WHERE subject_hash IS NOT NULL GROUP BY tenant, subject_hash;

      CREATE TABLE audit_subjects (
        handle BLOB NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (handle, seq)
      ) WITHOUT ROWID;
      INSERT OR IGNORE INTO audit_subjects (handle, seq)
        SELECT s.handle, a.seq FROM audit a, json_each(a.subjects) j, subjects s
        WHERE typeof(a.subjects) = 'text' AND s.subject_hash = unhex(j.value);
    `,
  },
  {
    // Retention: purgeExpired finds expired records through an index (never a table scan); leases
    // name the one instance that runs a vault-wide background task (the purge) at a time.
    version: 11,
    sql: `
      CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;
      CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until INTEGER NOT NULL);
    `,
  },
];
