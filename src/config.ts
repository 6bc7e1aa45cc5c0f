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

export const ConfigSchema = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1', description: 'Address to listen on. Env PII_VAULT_HOST.' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'TCP port; 0 picks a free one. Env PII_VAULT_PORT.' }),
    databaseFile: Type.String({ default: 'vault.db', description: 'SQLite database, relative to the data dir.' }),
    keyProvider: Type.Object(
      {
        type: Type.Literal('local', { default: 'local' }),
        keyFile: Type.String({ default: 'master.key', description: 'Master keyring file (mode 0600), relative to the data dir. Ignored when PII_VAULT_MASTER_KEY is set.' }),
      },
      { additionalProperties: false, default: {} },
    ),
    policyFile: Type.String({ default: 'policy.json', description: 'Roles, grants and principals; reloaded on SIGHUP.' }),
    phoneRegion: Type.Optional(Type.String({ pattern: '^[A-Z]{2}$', description: 'Region (ISO 3166) for national phone numbers; unset accepts only +… numbers.' })),
    logLevel: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const, {
      default: 'info',
      description: 'Log level. Env PII_VAULT_LOG_LEVEL.',
    }),
    keyCacheTtlSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 900, description: 'How long unwrapped data keys stay in memory.' }),
    keyCacheMaxEntries: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'How many unwrapped data keys are kept at most.' }),
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
  if (overrides.host !== undefined) raw.host = overrides.host;
  if (overrides.port !== undefined) raw.port = overrides.port;
  const config = Value.Default(ConfigSchema, raw);
  const error = checker.Errors(config).First();
  if (error) throw new ConfigError(`${file} ${error.path || '/'}: ${error.message}`);
  return { ...(config as Static<typeof ConfigSchema>), dataDir: dir };
}

/** A path from the config, relative to the data dir unless absolute. */
export function dataPath(config: VaultConfig, path: string): string {
  return isAbsolute(path) ? path : join(config.dataDir, path);
}

export function defaultConfigFile(): Static<typeof ConfigSchema> {
  return Value.Default(ConfigSchema, {}) as Static<typeof ConfigSchema>;
}
