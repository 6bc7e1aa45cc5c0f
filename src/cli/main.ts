import { accessSync, constants, existsSync, watchFile } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CONFIG_FILE, ConfigOverrides, dataPath, loadConfig, VaultConfig } from '../config';
import { InitResult, initDataDir } from '../app/init';
import { openVault } from '../app/open-vault';
import { PolicyReloadTrigger, reloadPolicy } from '../app/policy-reload';
import { startServer } from '../app/server';
import { migrate } from './migrate';
import { CliError, keysCommand } from './keys';
import { writeKeysFile } from './keys-file';

const USAGE = `Usage:
  pii-vault init  --data-dir DIR [--json] [--force] [--keys-file FILE]
                                                     create a vault; prints the starter API keys once
                                                     (--keys-file: writes them to FILE, mode 0600, and prints only its path)
  pii-vault serve --data-dir DIR [--port N] [--host H] serve the HTTP API (default 127.0.0.1:8080)
  pii-vault start --data-dir DIR [--port N] [--host H] [--keys-file FILE]
                                                     init if needed, then serve (what \`npm start\` runs)
  pii-vault audit verify --data-dir DIR [--json]     re-verify the whole audit hash chain (exit 0 intact, 1 broken)
  pii-vault audit verify --data-dir DIR --archive FILE [--json]   verify an archive file against the vault
  pii-vault audit archive --data-dir DIR --before SEQ --out FILE [--json]
                                                     export the verified rows before SEQ to a new FILE, then prune them
  pii-vault migrate --data-dir DIR --to postgres://… [--json]
                                                     copy the embedded SQLite vault into an empty PostgreSQL database and verify it

  pii-vault keys list      [--tenant T | --all] [--json]
  pii-vault keys rotate    [--tenant T | --all] [--json]         new active data-key version
  pii-vault keys rewrap    [--kms-key-id ID | --to-local] [--json] re-wrap every data key under the (new) KEK
  pii-vault keys reencrypt [--tenant T | --all] [--wait] [--json] move records to the active data key
  pii-vault keys retire    --version N [--tenant T]
  pii-vault keys destroy   --version N [--tenant T] --confirm "destroy T/data/vN"
     (keys commands call the API: PII_VAULT_URL, default http://127.0.0.1:8080, and
      PII_VAULT_API_KEY, a key of a principal with keys:* grants, e.g. security)
  pii-vault keys new-master-key --data-dir DIR          add a new active local master-key version

  pii-vault dev-kms [--port N] [--host H] [--data FILE]  a KMS-compatible endpoint for tests and local runs (NOT for production)
`;

class UsageError extends Error {}

const OPTIONS = {
  'data-dir': { type: 'string' },
  url: { type: 'string' },
  'api-key': { type: 'string' },
  tenant: { type: 'string' },
  all: { type: 'boolean', default: false },
  version: { type: 'string' },
  confirm: { type: 'string' },
  'kms-key-id': { type: 'string' },
  'to-local': { type: 'boolean', default: false },
  before: { type: 'string' },
  out: { type: 'string' },
  archive: { type: 'string' },
  wait: { type: 'boolean', default: false },
  data: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  json: { type: 'boolean', default: false },
  force: { type: 'boolean', default: false },
  'keys-file': { type: 'string' },
  to: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export async function main(argv: string[]): Promise<void> {
  // Everything the vault writes (database, WAL, keys, policy) is for its own user only.
  process.umask(0o077);
  try {
    process.exitCode = await run(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`pii-vault: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`pii-vault: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const command = positionals.join(' ');
  if (values.help || command === '' || command === 'help') {
    process.stdout.write(USAGE);
    return command === '' && !values.help ? 2 : 0;
  }
  if (positionals[0] === 'keys') {
    return keysCommand(positionals.slice(1).join(' '), {
      url: values.url,
      apiKey: values['api-key'],
      tenant: values.tenant,
      all: values.all,
      version: values.version,
      confirm: values.confirm,
      kmsKeyId: values['kms-key-id'],
      toLocal: values['to-local'],
      wait: values.wait,
      json: values.json,
      dataDir: values['data-dir'],
    }).catch((err) => {
      if (err instanceof CliError) throw new Error(err.message);
      throw err;
    });
  }
  if (command === 'dev-kms') return devKms(values);
  const dataDir = values['data-dir'];
  if (!dataDir) throw new UsageError('--data-dir is required');
  const keysFile = values['keys-file'];
  if (keysFile !== undefined && command !== 'init' && command !== 'start') throw new UsageError('--keys-file goes with init or start');
  // Checked before init: keys issued but not written anywhere would be lost.
  if (keysFile !== undefined) requireWritableDirectory(dirname(resolve(keysFile)), '--keys-file');
  switch (command) {
    case 'init':
      announceInit(await initDataDir(dataDir, { force: values.force }), { json: values.json, keysFile });
      return 0;
    case 'serve':
      return serve(dataDir, overrides(values));
    case 'start':
      if (!existsSync(join(resolve(dataDir), CONFIG_FILE))) announceInit(await initDataDir(dataDir), { json: false, keysFile });
      return serve(dataDir, overrides(values));
    case 'audit verify':
      return values.archive === undefined ? auditVerify(dataDir, values.json) : auditVerifyArchive(dataDir, values.archive, values.json);
    case 'audit archive':
      return auditArchive(dataDir, values, values.json);
    case 'migrate':
      if (!values.to) throw new UsageError('--to postgres://… is required');
      return migrate(dataDir, values.to, values.json);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function overrides(values: { port?: string; host?: string }): ConfigOverrides {
  const result: ConfigOverrides = {};
  if (values.port !== undefined) {
    if (!/^\d{1,5}$/.test(values.port) || Number(values.port) > 65535) throw new UsageError('--port must be 0–65535');
    result.port = Number(values.port);
  }
  if (values.host !== undefined) result.host = values.host;
  return result;
}

function requireWritableDirectory(dir: string, option: string): void {
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new UsageError(`${option}: cannot write into ${dir} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** Tells the operator about a new vault (or re-issued keys): the keys themselves, or only where they were written. */
function announceInit(result: InitResult, { json, keysFile }: { json: boolean; keysFile?: string }): void {
  const file = keysFile === undefined ? undefined : resolve(keysFile);
  if (file) writeKeysFile(file, result);
  if (json) {
    const shown = file ? { keysFile: file } : { apiKeys: result.apiKeys };
    process.stdout.write(JSON.stringify({ ...shown, dataDir: result.dataDir }) + '\n');
    return;
  }
  const lines = [
    result.kept.length
      ? `Re-issued starter API keys for the vault in ${result.dataDir} (kept: ${result.kept.join(', ')})`
      : `Created a vault in ${result.dataDir}`,
    ...(file
      ? [`API keys written to ${file} (mode 0600): move them to your secrets manager, then delete the file.`]
      : [
          'API keys (shown only now; store them in your secrets manager):',
          ...Object.entries(result.apiKeys).map(([id, key]) => `  ${id.padEnd(9)} ${key}`),
        ]),
    result.kept.length
      ? `A running vault loads the new keys within ${POLICY_WATCH_INTERVAL_MS / 1000} s (it watches its policy file); the previous keys stop working then.`
      : `Serve it with: pii-vault serve --data-dir ${result.dataDir}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

async function serve(dataDir: string, flags: ConfigOverrides): Promise<number> {
  const config = loadConfig(dataDir, flags);
  const running = await startServer(config);
  const shutdown = (signal: string) => {
    running.logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  const reload = (trigger: PolicyReloadTrigger) => void reloadPolicy(running.opened, running.logger, trigger);
  process.on('SIGHUP', () => reload('sighup'));
  watchPolicyFile(config, () => reload('policy-file-changed'));
  // Announced only once the signal handlers are in place: a supervisor may signal right after this line.
  process.stdout.write(`listening on ${running.url}\n`);
  running.logger.info({ url: running.url, dataDir: config.dataDir }, 'vault started');
  return new Promise<number>(() => undefined);
}

/** How often the serving process looks at its policy file for changes (new API keys from `init --force`, edits). */
const POLICY_WATCH_INTERVAL_MS = 1_000;

/**
 * Reloads the policy when its file changes, as SIGHUP does, so re-issued or revoked API keys take
 * effect without a signal. Polling stat() (size, times, inode) sees in-place writes and atomic renames alike.
 */
function watchPolicyFile(config: VaultConfig, onChange: () => void): void {
  watchFile(dataPath(config, config.policyFile), { persistent: false, interval: POLICY_WATCH_INTERVAL_MS }, onChange);
}

async function devKms(values: { port?: string; host?: string; data?: string }): Promise<number> {
  const { port } = overrides({ port: values.port ?? '4599' });
  return loadDevKms().runDevKms({ port: port!, host: values.host ?? '127.0.0.1', dataFile: values.data });
}

/** The dev KMS is loaded only when asked for: production builds (tsconfig.build.json) leave it out. */
function loadDevKms(): { runDevKms(options: { port: number; host: string; dataFile?: string }): Promise<number> } {
  try {
    // A plain require (not an import) keeps the dev KMS out of the production build's compilation.
    return require('../dev-kms/cli');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error('the dev KMS is not part of this build (it is for tests and local runs; use a development checkout)', { cause: err });
  }
}

async function auditVerify(dataDir: string, json: boolean): Promise<number> {
  const opened = await openVault(loadConfig(dataDir));
  try {
    const result = await opened.audit.verify({ full: true });
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else if (result.ok) process.stdout.write(`audit chain intact: ${result.rows} rows, head #${result.headSeq} ${result.headHash}\n`);
    else
      process.stdout.write(`audit chain BROKEN at row #${result.firstBadSeq}: ${result.reason} (${result.rows} rows verified before it)\n`);
    if (!json && result.checkpoint === 'rejected') {
      process.stdout.write('the stored verification checkpoint was REJECTED: its MAC does not verify (forged or damaged)\n');
    }
    return result.ok ? 0 : 1;
  } finally {
    await opened.close();
  }
}

async function auditArchive(dataDir: string, values: { before?: string; out?: string }, json: boolean): Promise<number> {
  if (values.before === undefined || !/^[1-9][0-9]{0,14}$/.test(values.before))
    throw new UsageError('--before must be a row number (1 or more)');
  if (!values.out) throw new UsageError('--out FILE is required');
  const opened = await openVault(loadConfig(dataDir));
  try {
    const summary = await opened.audit.archive(Number(values.before), resolve(values.out));
    if (json) process.stdout.write(JSON.stringify(summary) + '\n');
    else
      process.stdout.write(
        `archived rows #${summary.fromSeq}–#${summary.throughSeq} (${summary.rows} rows) to ${values.out} and pruned them; ` +
          `the chain left in the vault continues from head ${summary.headHash}\n`,
      );
    return 0;
  } finally {
    await opened.close();
  }
}

async function auditVerifyArchive(dataDir: string, file: string, json: boolean): Promise<number> {
  const opened = await openVault(loadConfig(dataDir));
  try {
    const check = await opened.audit.verifyArchive(file);
    if (json) process.stdout.write(JSON.stringify(check) + '\n');
    else if (check.ok)
      process.stdout.write(
        `archive intact: rows #${check.fromSeq}–#${check.throughSeq} (${check.rows} rows), head ${check.headHash}, recorded by this vault\n`,
      );
    else process.stdout.write(`archive BROKEN at line ${check.line}: ${check.reason}\n`);
    return check.ok ? 0 : 1;
  } finally {
    await opened.close();
  }
}
