/**
 * Configuration: one schema where every key has a description and a default, read from
 * DATA_DIR/config.json, then environment variables, then command-line flags (last wins).
 * Secrets get no default: the master key comes from its own file or PII_VAULT_MASTER_KEY.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { oneOf } from './contract/one-of';
import { MAX_TTL_SECONDS } from './contract/schemas';
import { DATA_TYPES } from './domain/types';
import { TrustedProxies } from './http/client-address';

function LimitSchema(description: string, rate: number, burst: number) {
  return Type.Object(
    {
      ratePerSecond: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, default: rate }),
      burst: Type.Integer({ minimum: 1, maximum: 10_000_000, default: burst }),
    },
    { additionalProperties: false, default: {}, description },
  );
}

export const ConfigSchema = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1', env: 'PII_VAULT_HOST', description: 'Address to listen on.' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, env: 'PII_VAULT_PORT', description: 'TCP port; 0 picks a free one.' }),
    databaseFile: Type.String({ default: 'vault.db', description: 'SQLite file, relative to the data dir (unused with database.url).' }),
    keyProvider: Type.Object(
      {
        type: oneOf(['local', 'aws-kms'] as const, {
          default: 'local',
          description: 'Which KEK wraps new data keys: the local master key or an AWS KMS key.',
        }),
        keyFile: Type.String({
          default: 'master.key',
          description:
            'Local master keyring file, relative to the data dir; must be mode 0600. Ignored when PII_VAULT_MASTER_KEY is set; optional once every key is in KMS.',
        }),
        kms: Type.Object(
          {
            keyId: Type.Optional(
              Type.String({ minLength: 1, env: 'PII_VAULT_KMS_KEY_ID', description: 'KMS key id, ARN, alias/… or alias ARN.' }),
            ),
            allowedKeyIds: Type.Array(Type.String({ minLength: 1 }), {
              default: [],
              description:
                'Other KMS keys (ids, ARNs or aliases, resolved to ARNs at start-up) a rewrap may switch to; only keyId and these unwrap data keys.',
            }),
            region: Type.Optional(
              Type.String({ env: 'PII_VAULT_KMS_REGION', description: 'AWS region; unset, the SDK default chain (AWS_REGION).' }),
            ),
            endpoint: Type.Optional(
              Type.String({ env: 'PII_VAULT_KMS_ENDPOINT', description: 'Endpoint override (VPC endpoint, or the dev KMS).' }),
            ),
            timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 2_000, description: 'Per-attempt timeout of a KMS call.' }),
            maxAttempts: Type.Integer({
              minimum: 1,
              maximum: 10,
              default: 3,
              description: 'Attempts per KMS call, with exponential backoff (throttling included).',
            }),
          },
          { additionalProperties: false, default: {} },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    dekMaxAgeDays: Type.Integer({
      minimum: 1,
      maximum: 3650,
      default: 90,
      description: 'A data key older than this is rotated automatically.',
    }),
    dekMaxEncryptions: Type.Integer({
      minimum: 1,
      maximum: 2 ** 31,
      default: 2 ** 30,
      description:
        'A data key that encrypted this many values is rotated automatically (well under the 2^32 random-nonce limit of AES-GCM).',
    }),
    legacyRecordBinding: Type.Union([Type.Literal('accept'), Type.Literal('refuse')], {
      default: 'accept',
      description:
        'Whether records sealed before binding 2 (only tenant, type, token and key version bound) still open. init writes refuse (a new vault has none); an upgraded vault accepts them until a re-encryption job leaves none, then sets refuse.',
    }),
    rateLimits: Type.Object(
      {
        default: LimitSchema('Requests per second (and burst) each principal may make, unless its role says otherwise.', 2_000, 4_000),
        roles: Type.Record(Type.String(), LimitSchema('Per-role limit; a principal gets the most generous of its roles.', 2_000, 4_000), {
          default: {},
          description:
            'Per-role buckets, e.g. {"billing":{"ratePerSecond":5000,"burst":10000}}; a principal gets its most generous role\'s.',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    authFailuresPerMinute: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 20,
      description: 'Failed authentications per client address (IPv6: per /64) per minute before they get 429; valid keys are never braked.',
    }),
    maxConcurrentRequests: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 512,
      description: 'Requests in flight at most; more get 503 overloaded (/healthz, /readyz and /metrics are not counted).',
    }),
    maxConcurrentRequestsPerPrincipal: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 64,
      description:
        'Requests in flight at most per principal, counted from its headers (before the body arrives), so one cannot hold every slot; more get 503 overloaded.',
    }),
    trustProxy: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'Proxies (addresses or CIDRs, IPv4/IPv6, e.g. ["10.0.0.0/8"]) whose X-Forwarded-For names the client for the failed-authentication brake; empty, the socket peer is the client.',
    }),
    headersTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 10_000,
      description: 'A client must send its headers within this (slow-loris brake).',
    }),
    requestTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 30_000,
      description: 'A client must send its whole request within this.',
    }),
    keepAliveTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 5_000,
      description: 'Idle keep-alive connections are closed after this.',
    }),
    databaseBusyTimeoutMs: Type.Integer({
      minimum: 0,
      maximum: 600_000,
      default: 5_000,
      description:
        'How long a write waits for a locked SQLite database (another process writing) before 503 store_unavailable; writes take the lock up front (BEGIN IMMEDIATE) so the wait applies.',
    }),
    database: Type.Object(
      {
        url: Type.Optional(
          Type.String({
            pattern: '^postgres(ql)?://',
            description:
              'postgres://user@host:port/db selects the PostgreSQL store instead of the SQLite file, for init, serve, start, audit verify and keys (several instances can share it).',
            env: 'PII_VAULT_DATABASE_URL',
          }),
        ),
        poolSize: Type.Integer({ minimum: 1, maximum: 1_000, default: 10, description: 'PostgreSQL connections per instance at most.' }),
        connectTimeoutMs: Type.Integer({
          minimum: 100,
          maximum: 600_000,
          default: 5_000,
          description: 'How long a request waits for a PostgreSQL connection before 503 store_unavailable.',
        }),
        statementTimeoutMs: Type.Integer({
          minimum: 100,
          maximum: 600_000,
          default: 10_000,
          description: 'PostgreSQL statement_timeout: a statement running longer fails (503 store_unavailable).',
        }),
        idleInTransactionTimeoutMs: Type.Integer({
          minimum: 100,
          maximum: 600_000,
          default: 30_000,
          description: 'PostgreSQL idle_in_transaction_session_timeout: a session idle inside a transaction this long is ended.',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    subjectKeys: Type.Object(
      {
        enabled: Type.Array(
          Type.Object(
            {
              tenant: Type.String({ minLength: 1, description: 'A tenant, or * for every tenant.' }),
              types: Type.Array(oneOf([...DATA_TYPES, '*'] as const), { minItems: 1, uniqueItems: true }),
            },
            { additionalProperties: false },
          ),
          {
            default: [],
            description:
              'Per-subject keys (crypto-shredding) for records with a subject, by tenant and data type, e.g. [{"tenant":"*","types":["pan","email"]}]; empty, none.',
          },
        ),
        path: Type.String({
          minLength: 1,
          default: 'subject-keys.db',
          description: 'SQLite file of the per-subject keys, relative to the data dir (SQLite vaults; never inside the vault database).',
        }),
        databaseUrl: Type.Optional(
          Type.String({
            pattern: '^postgres(ql)?://',
            env: 'PII_VAULT_SUBJECT_KEYS_DATABASE_URL',
            description:
              'PostgreSQL database of the per-subject keys, other than database.url; required when a PostgreSQL vault enables per-subject keys.',
          }),
        ),
        cacheTtlSeconds: Type.Integer({
          minimum: 1,
          maximum: 86_400,
          default: 60,
          description:
            'How long an unwrapped subject key stays in memory (a key destroyed by another instance stays usable here that long).',
        }),
        cacheMaxEntries: Type.Integer({
          minimum: 1,
          maximum: 1_000_000,
          default: 10_000,
          description: 'How many unwrapped subject keys are kept in memory; the least recently used goes first.',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    shutdownTimeoutMs: Type.Integer({
      minimum: 0,
      maximum: 600_000,
      default: 10_000,
      description: 'How long SIGTERM waits for in-flight requests before closing connections.',
    }),
    tls: Type.Optional(
      Type.Object(
        {
          certFile: Type.String({ description: 'PEM certificate chain of the server, relative to the data dir.' }),
          keyFile: Type.String({ description: 'PEM private key of the server (mode 0600).' }),
          clientCaFile: Type.Optional(Type.String({ description: 'PEM CA bundle that client certificates must chain to (enables mTLS).' })),
          requireClientCert: Type.Boolean({
            default: false,
            description: 'Refuse TLS clients without a certificate signed by clientCaFile.',
          }),
        },
        { additionalProperties: false },
      ),
    ),
    metrics: Type.Boolean({
      default: true,
      description: 'Serve Prometheus metrics at GET /metrics (no auth; no values or tokens in them).',
    }),
    reencryptBatchSize: Type.Integer({ minimum: 1, maximum: 10_000, default: 200, description: 'Records per re-encryption transaction.' }),
    reencryptPauseMs: Type.Integer({
      minimum: 0,
      maximum: 60_000,
      default: 5,
      description: 'Pause between re-encryption batches, leaving room for live traffic.',
    }),
    reencryptLeaseMs: Type.Integer({
      minimum: 100,
      maximum: 3_600_000,
      default: 30_000,
      description:
        'Lease of a re-encryption job: one instance runs a job, renewing the lease each batch; another takes it over this long after the holder stops renewing (dies).',
    }),
    retention: Type.Record(
      Type.String(),
      Type.Object(
        {
          defaultTtlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_SECONDS })),
          maxTtlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_SECONDS })),
        },
        { additionalProperties: false },
      ),
      {
        default: {},
        description:
          'Retention limits per data type, e.g. {"pan":{"defaultTtlSeconds":86400,"maxTtlSeconds":2592000}} (either optional, default ≤ max): a tokenize item without ttlSeconds gets defaultTtlSeconds (else maxTtlSeconds); one asking for more than maxTtlSeconds is refused with 400 ttl_exceeds_retention.',
      },
    ),
    purgeIntervalSeconds: Type.Integer({
      minimum: 0,
      maximum: 604_800,
      default: 3_600,
      description:
        'How often the server deletes expired records (one instance at a time on a shared database; the first run a few seconds after start); 0 disables the task (pii-vault purge still works).',
    }),
    purgeBatchSize: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 500,
      description: 'Expired records deleted per purge transaction (each with its own audit row of counts), with a pause between batches.',
    }),
    policyFile: Type.String({
      default: 'policy.json',
      description: 'Roles, grants and principals; reloaded on SIGHUP and when the file changes; must not be writable by other users.',
    }),
    phoneRegion: Type.Optional(
      Type.String({ pattern: '^[A-Z]{2}$', description: 'Region (ISO 3166) for national phone numbers; unset accepts only +… numbers.' }),
    ),
    logLevel: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const, {
      default: 'info',
      env: 'PII_VAULT_LOG_LEVEL',
      description: 'Log level: fatal, error, warn, info, debug or silent.',
    }),
    keyCacheTtlSeconds: Type.Integer({
      minimum: 1,
      maximum: 86_400,
      default: 900,
      description: 'How long unwrapped data keys stay in memory.',
    }),
    keyCacheMaxEntries: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 10_000,
      description:
        'How many unwrapped data keys are kept; the least recently used old version goes first, the audit key and active keys last.',
    }),
  },
  { additionalProperties: false },
);

export type VaultConfig = Static<typeof ConfigSchema> & { dataDir: string };

const checker = TypeCompiler.Compile(ConfigSchema);

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const CONFIG_FILE = 'config.json';

export interface ConfigOverrides {
  host?: string;
  port?: number;
}

export function loadConfig(dataDir: string, overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): VaultConfig {
  const dir = resolve(dataDir);
  const file = join(dir, CONFIG_FILE);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${file}: must be a JSON object`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`${file} not found; run \`pii-vault init --data-dir ${dataDir}\` first`);
    throw new ConfigError(`${file}: ${code ?? 'not valid JSON'}`);
  }
  if (env.PII_VAULT_HOST) raw.host = env.PII_VAULT_HOST;
  if (env.PII_VAULT_PORT) {
    if (!/^\d{1,5}$/.test(env.PII_VAULT_PORT)) throw new ConfigError('PII_VAULT_PORT (/port) must be a whole number 0–65535');
    raw.port = Number(env.PII_VAULT_PORT);
  }
  if (env.PII_VAULT_LOG_LEVEL) raw.logLevel = env.PII_VAULT_LOG_LEVEL;
  if (env.PII_VAULT_DATABASE_URL) raw.database = { ...((raw.database as object) ?? {}), url: env.PII_VAULT_DATABASE_URL };
  if (env.PII_VAULT_SUBJECT_KEYS_DATABASE_URL) {
    raw.subjectKeys = { ...((raw.subjectKeys as object) ?? {}), databaseUrl: env.PII_VAULT_SUBJECT_KEYS_DATABASE_URL };
  }
  const kmsEnv = { keyId: env.PII_VAULT_KMS_KEY_ID, region: env.PII_VAULT_KMS_REGION, endpoint: env.PII_VAULT_KMS_ENDPOINT };
  if (Object.values(kmsEnv).some(Boolean)) {
    const provider = (raw.keyProvider ??= {}) as Record<string, unknown>;
    const kms = (provider.kms ??= {}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(kmsEnv)) if (value) kms[key] = value;
  }
  if (overrides.host !== undefined) raw.host = overrides.host;
  if (overrides.port !== undefined) raw.port = overrides.port;
  const config = Value.Default(ConfigSchema, raw);
  const error = checker.Errors(config).First();
  if (error) throw new ConfigError(`${file} ${error.path || '/'}: ${error.message}`);
  const { database, subjectKeys } = config as Static<typeof ConfigSchema>;
  if (subjectKeys.databaseUrl && subjectKeys.databaseUrl === database.url) {
    throw new ConfigError(
      `${file} /subjectKeys/databaseUrl: must name a database other than database.url (a key kept in the vault database would survive in its backups)`,
    );
  }
  checkRetention((config as Static<typeof ConfigSchema>).retention, file);
  try {
    new TrustedProxies((config as Static<typeof ConfigSchema>).trustProxy);
  } catch (err) {
    throw new ConfigError(`${file} /trustProxy: ${(err as Error).message}`);
  }
  return { ...(config as Static<typeof ConfigSchema>), dataDir: dir };
}

/** Retention limits name known data types, and a type's default lifetime is within its maximum. */
function checkRetention(retention: Static<typeof ConfigSchema>['retention'], file: string): void {
  for (const [type, limits] of Object.entries(retention)) {
    if (!(DATA_TYPES as readonly string[]).includes(type)) {
      throw new ConfigError(`${file} /retention/${type}: not a data type (one of ${DATA_TYPES.join(', ')})`);
    }
    const { defaultTtlSeconds, maxTtlSeconds } = limits;
    if (defaultTtlSeconds !== undefined && maxTtlSeconds !== undefined && defaultTtlSeconds > maxTtlSeconds) {
      throw new ConfigError(
        `${file} /retention/${type}: defaultTtlSeconds (${defaultTtlSeconds}) must not be above maxTtlSeconds (${maxTtlSeconds})`,
      );
    }
  }
}

/** A path from the config, relative to the data dir unless absolute. */
export function dataPath(config: VaultConfig, path: string): string {
  return isAbsolute(path) ? path : join(config.dataDir, path);
}

export function defaultConfigFile(): Static<typeof ConfigSchema> {
  return Value.Default(ConfigSchema, {}) as Static<typeof ConfigSchema>;
}
