/**
 * Versioned PostgreSQL schema changes, applied in order at start under an advisory lock (several
 * instances may start at once); never edit one that has shipped. Version 1 is the SQLite schema as
 * of its migration 5, with two differences: tokens compare in byte order (COLLATE "C", as SQLite
 * does, so re-encryption's token cursor walks the same order), and the audit chain's head is a row
 * of its own that every append locks (one chain, appends serialised across instances); and counters
 * (records per key, encryptions per key) are upserted deltas, applied at the end of a transaction.
 */
export const POSTGRES_MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
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
        wrapped BYTEA,
        created_at BIGINT NOT NULL,
        encryptions BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, purpose, version)
      );
      CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant, purpose) WHERE state = 'active';

      CREATE TABLE tokens (
        token TEXT COLLATE "C" NOT NULL,
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL,
        preserve TEXT,
        binding INTEGER NOT NULL,
        key_version INTEGER NOT NULL,
        nonce BYTEA NOT NULL,
        ciphertext BYTEA NOT NULL,
        tag BYTEA NOT NULL,
        fingerprint BYTEA,
        subject_hash BYTEA,
        subject_sealed BYTEA,
        metadata TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (token, tenant)
      );
      CREATE UNIQUE INDEX tokens_fingerprint ON tokens (tenant, type, fingerprint, format, preserve) WHERE fingerprint IS NOT NULL;
      CREATE INDEX tokens_subject ON tokens (tenant, subject_hash) WHERE subject_hash IS NOT NULL;
      CREATE INDEX tokens_key_version ON tokens (tenant, key_version);

      CREATE TABLE record_counts (
        tenant TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        records BIGINT NOT NULL,
        PRIMARY KEY (tenant, key_version)
      );
      -- Encryptions made under each data key, counted apart from data_keys so that counting (by
      -- every insert) never waits for the FOR SHARE locks that inserts take on the key row.
      CREATE TABLE data_key_usage (
        tenant TEXT NOT NULL,
        version INTEGER NOT NULL,
        encryptions BIGINT NOT NULL,
        PRIMARY KEY (tenant, version)
      );

      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        tenants TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
        total BIGINT NOT NULL DEFAULT 0,
        done BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        requested_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        finished_at BIGINT,
        error TEXT
      );

      -- Lists (types, tokens, subjects) are JSON text; PostgreSQL compresses long values itself (TOAST).
      CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
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
        prev_hash BYTEA NOT NULL,
        hash BYTEA NOT NULL
      );
      CREATE INDEX audit_tenant_seq ON audit (tenant, seq);

      -- Where the chain ends (archived rows included): locked FOR UPDATE by every append.
      CREATE TABLE audit_chain_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL
      );
      INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

      CREATE TABLE audit_segments (
        through_seq BIGINT PRIMARY KEY,
        from_seq BIGINT NOT NULL,
        prev_hash BYTEA NOT NULL,
        head_hash BYTEA NOT NULL,
        archived_at TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        mac BYTEA NOT NULL
      );
      CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        key_version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        mac BYTEA NOT NULL
      );
    `,
  },
  {
    // Re-encryption job leases (the seam's leaseJob): which instance runs a job, and until when (ms, database clock).
    version: 2,
    sql: `
      ALTER TABLE jobs ADD COLUMN lease_owner TEXT, ADD COLUMN lease_until BIGINT;
    `,
  },
  {
    // Data subjects and the audit index by subject handle: see SQLite migration 10. Existing
    // subjects get handles from gen_random_uuid() (122 random bits; new ones get 16 random bytes).
    version: 3,
    sql: `
      CREATE TABLE subjects (
        tenant TEXT NOT NULL,
        subject_hash BYTEA NOT NULL,
        handle BYTEA NOT NULL UNIQUE,
        purposes TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, subject_hash)
      );
      INSERT INTO subjects (tenant, subject_hash, handle, purposes, created_at, updated_at)
        SELECT tenant, subject_hash, decode(replace(gen_random_uuid()::text, '-', ''), 'hex'), NULL, min(created_at), min(created_at)
        FROM tokens WHERE subject_hash IS NOT NULL GROUP BY tenant, subject_hash;

      CREATE TABLE audit_subjects (
        handle BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (handle, seq)
      );
      INSERT INTO audit_subjects (handle, seq)
        SELECT s.handle, a.seq FROM audit a CROSS JOIN LATERAL json_array_elements_text(a.subjects::json) j(h)
          JOIN subjects s ON s.subject_hash = decode(j.h, 'hex')
        ON CONFLICT DO NOTHING;
    `,
  },
  {
    // Retention (SQLite migration 11): an index for purgeExpired, and leases of vault-wide background tasks (ms, database clock).
    version: 4,
    sql: `
      CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;
      CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until BIGINT NOT NULL);
    `,
  },
];
