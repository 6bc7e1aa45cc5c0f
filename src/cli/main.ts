import { accessSync, constants, existsSync, watchFile } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_FILE, ConfigOverrides, dataPath, loadConfig, VaultConfig } from '../config';
import { InitResult, initDataDir } from '../app/init';
import { openVault } from '../app/open-vault';
import { PolicyReloadTrigger, reloadPolicy } from '../app/policy-reload';
import { startServer, VERSION } from '../app/server';
import { createLogger } from '../logger';
import { CommandSpec, CommandValues, OptionName, parseCommandLine, UsageError } from './args';
import { keysCommand, KeysCommandOptions } from './keys';
import { writeKeysFile } from './keys-file';
import { migrate } from './migrate';
import { subjectsCommand } from './subjects';
import { loadPolicyFile } from '../policy/policy-file';
import { policyReport } from '../service/policy-report';
import { policyReportMarkdown } from '../service/policy-report-markdown';
import { purge } from './purge';

const KEYS_API = ['url', 'api-key'] as const;

/** Every command: its usage and options (checked by args.ts) and what it runs. Adding a command is one entry. */
const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'init',
    synopsis: '--data-dir DIR [--json] [--force] [--keys-file FILE]',
    summary: 'create a vault; prints the starter API keys once (--keys-file: writes them to FILE, mode 0600, and prints only its path)',
    options: ['data-dir', 'json', 'force', 'keys-file'],
    run: async (v) => {
      const dataDir = requireDataDir(v);
      requireKeysFileDirectory(v['keys-file']);
      announceInit(await initDataDir(dataDir, { force: v.force }), { json: !!v.json, keysFile: v['keys-file'], out: process.stdout });
      return 0;
    },
  },
  {
    name: 'serve',
    synopsis: '--data-dir DIR [--port N] [--host H]',
    summary: 'serve the HTTP API (default 127.0.0.1:8080)',
    options: ['data-dir', 'port', 'host'],
    notes: ['stdout: one line "listening on URL" once ready, then JSON log lines only.'],
    run: (v) => serve(requireDataDir(v), overrides(v)),
  },
  {
    name: 'start',
    synopsis: '--data-dir DIR [--port N] [--host H] [--keys-file FILE]',
    summary: 'init if needed, then serve (what `npm start` runs)',
    options: ['data-dir', 'port', 'host', 'keys-file'],
    notes: [
      'On first run the starter API keys go to stderr (or to --keys-file); stdout is as for serve:',
      'one line "listening on URL", then JSON log lines only.',
    ],
    run: async (v) => {
      const dataDir = requireDataDir(v);
      const flags = overrides(v);
      requireKeysFileDirectory(v['keys-file']);
      if (!existsSync(join(resolve(dataDir), CONFIG_FILE)))
        announceInit(await initDataDir(dataDir), { json: false, keysFile: v['keys-file'], out: process.stderr });
      return serve(dataDir, flags);
    },
  },
  {
    name: 'audit verify',
    synopsis: '--data-dir DIR [--archive FILE] [--json]',
    summary: 're-verify the whole audit hash chain, or an archive file against the vault (exit 0 intact, 1 broken)',
    options: ['data-dir', 'archive', 'json'],
    run: (v) =>
      v.archive === undefined ? auditVerify(requireDataDir(v), !!v.json) : auditVerifyArchive(requireDataDir(v), v.archive, !!v.json),
  },
  {
    name: 'audit archive',
    synopsis: '--data-dir DIR --before SEQ --out FILE [--json]',
    summary: 'export the verified rows before SEQ to a new FILE, then prune them',
    options: ['data-dir', 'before', 'out', 'json'],
    run: (v) => auditArchive(requireDataDir(v), v, !!v.json),
  },
  keys('list', '[--tenant T | --all] [--json]', 'list data-key versions, states, KEKs and record counts', ['tenant', 'all', 'json']),
  keys('rotate', '[--tenant T | --all] [--json]', 'new active data-key version (the previous ones stay decrypt-only)', [
    'tenant',
    'all',
    'json',
  ]),
  keys('rewrap', '[--kms-key-id ID | --to-local] [--json]', 're-wrap every data key under the (new) KEK', [
    'kms-key-id',
    'to-local',
    'json',
  ]),
  keys('reencrypt', '[--tenant T | --all] [--wait] [--json]', 'move records to the active data key', ['tenant', 'all', 'wait', 'json']),
  keys('retire', '--version N [--tenant T] [--json]', 'retire a decrypt-only version no record uses', ['version', 'tenant', 'json']),
  keys('destroy', '--version N [--tenant T] --confirm "destroy T/data/vN" [--json]', 'crypto-shred a retired version (irreversible)', [
    'version',
    'tenant',
    'confirm',
    'json',
  ]),
  {
    name: 'keys new-master-key',
    synopsis: '--data-dir DIR [--json]',
    summary: 'add a new active local master-key version (then run `pii-vault keys rewrap`)',
    options: ['data-dir', 'json'],
    run: (v) => keysCommand('new-master-key', keysOptions(v)),
  },
  subjects('export', 'every record of a data subject at your reveal level, and its consent'),
  subjects('access-log', 'every audited decision that touched a data subject', ['from', 'until']),
  subjects('erase', 'erase a data subject: its records, and the link from its audit handle to it (irreversible)'),
  subjects('consent', "grant or withdraw purposes in a data subject's consent", ['grant', 'withdraw']),
  {
    name: 'policy report',
    synopsis: '--data-dir DIR [--json]',
    summary:
      'who may do what under the policy file: per role and principal, each action × data type with reveal level and purposes, and retention (Markdown, or JSON)',
    options: ['data-dir', 'json'],
    notes: ['The running vault answers the same for the policy it has loaded: GET /v1/policy/report (action policy:read).'],
    run: (v) => policyReportCommand(requireDataDir(v), !!v.json),
  },
  {
    name: 'migrate',
    synopsis: '--data-dir DIR --to postgres://… [--json]',
    summary: 'copy the embedded SQLite vault into an empty PostgreSQL database and verify the copy (the source is not modified)',
    options: ['data-dir', 'to', 'json'],
    run: (v) => {
      if (!v.to) throw new UsageError('--to postgres://… is required');
      return migrate(requireDataDir(v), v.to, !!v.json);
    },
  },
  {
    name: 'purge',
    synopsis: '--data-dir DIR [--dry-run] [--json]',
    summary: 'delete every expired record now, in batches, each audited with counts only (--dry-run: count them, delete nothing)',
    options: ['data-dir', 'dry-run', 'json'],
    notes: ['Works on the SQLite file or, with PII_VAULT_DATABASE_URL (or database.url), on PostgreSQL, beside running instances.'],
    run: (v) => purge(requireDataDir(v), !!v['dry-run'], !!v.json),
  },
  {
    name: 'dev-kms',
    synopsis: '[--port N] [--host H] [--data FILE]',
    summary: 'a KMS-compatible endpoint for tests and local runs (NOT for production; default port 4599)',
    options: ['port', 'host', 'data'],
    run: (v) => devKms(v),
  },
];

/** A keys command that calls the API of a running vault (--url/--api-key). */
function keys(sub: string, synopsis: string, summary: string, options: readonly OptionName[]): CommandSpec {
  return {
    name: `keys ${sub}`,
    synopsis: `${synopsis} [--url URL] [--api-key KEY]`,
    summary,
    options: [...options, ...KEYS_API],
    run: (v) => keysCommand(sub, keysOptions(v)),
  };
}

/** A subjects command: calls the API of a running vault; the subject id comes on standard input unless --subject. */
function subjects(sub: string, summary: string, options: readonly OptionName[] = []): CommandSpec {
  const extra = options.map((name) => `[--${name} ${name === 'grant' || name === 'withdraw' ? 'P,P' : 'TIME'}]`).join(' ');
  return {
    name: `subjects ${sub}`,
    synopsis: `[--tenant T] [--subject ID] ${extra ? `${extra} ` : ''}[--json] [--url URL] [--api-key KEY]`,
    summary,
    options: ['tenant', 'subject', 'json', ...options, ...KEYS_API],
    run: (v) =>
      subjectsCommand(sub, {
        url: v.url,
        apiKey: v['api-key'],
        tenant: v.tenant,
        subject: v.subject,
        from: v.from,
        until: v.until,
        grant: v.grant,
        withdraw: v.withdraw,
        json: !!v.json,
      }),
  };
}

function keysOptions(v: CommandValues): KeysCommandOptions {
  return {
    url: v.url,
    apiKey: v['api-key'],
    tenant: v.tenant,
    all: !!v.all,
    version: v.version,
    confirm: v.confirm,
    kmsKeyId: v['kms-key-id'],
    toLocal: !!v['to-local'],
    wait: !!v.wait,
    json: !!v.json,
    dataDir: v['data-dir'],
  };
}

export async function main(argv: string[]): Promise<void> {
  // Everything the vault writes (database, WAL, keys, policy) is for its own user only.
  process.umask(0o077);
  let command: CommandSpec | undefined;
  try {
    const line = parseCommandLine(argv, COMMANDS);
    if (line.kind === 'version') {
      process.stdout.write(`pii-vault ${VERSION}\n`);
      return;
    }
    if (line.kind === 'help') {
      (line.exitCode === 0 ? process.stdout : process.stderr).write(line.text);
      process.exitCode = line.exitCode;
      return;
    }
    command = line.command;
    process.exitCode = await command.run(line.values);
  } catch (err) {
    if (err instanceof UsageError) {
      // A command's own checks (a missing --data-dir, a bad --port) name no command: the one running.
      const usage = err.command || err.helpFor || !command ? err : new UsageError(err.message, command.name);
      process.stderr.write(usage.line() + '\n');
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`pii-vault: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

function requireDataDir(values: CommandValues): string {
  if (!values['data-dir']) throw new UsageError('--data-dir is required');
  return values['data-dir'];
}

/** Checked before init: keys issued but not written anywhere would be lost. */
function requireKeysFileDirectory(keysFile: string | undefined): void {
  if (keysFile !== undefined) requireWritableDirectory(dirname(resolve(keysFile)), '--keys-file');
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
function announceInit(result: InitResult, { json, keysFile, out }: { json: boolean; keysFile?: string; out: NodeJS.WritableStream }): void {
  const file = keysFile === undefined ? undefined : resolve(keysFile);
  if (file) writeKeysFile(file, result);
  if (json) {
    const shown = file ? { keysFile: file } : { apiKeys: result.apiKeys };
    out.write(JSON.stringify({ ...shown, dataDir: result.dataDir }) + '\n');
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
  out.write(lines.join('\n') + '\n');
}

async function serve(dataDir: string, flags: ConfigOverrides): Promise<number> {
  const config = loadConfig(dataDir, flags);
  // Tools read `listening on` as stdout's first line: log lines written while starting wait for it.
  const stdout = heldUntilReleased(process.stdout);
  const running = await startServer(config, createLogger(config.logLevel, stdout)).catch((err: unknown) => {
    stdout.release();
    throw err;
  });
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
  stdout.release();
  running.logger.info({ url: running.url, dataDir: config.dataDir }, 'vault started');
  return new Promise<number>(() => undefined);
}

/** A log destination that keeps what is written until released, then passes everything through. */
function heldUntilReleased(out: NodeJS.WritableStream): { write(line: string): void; release(): void } {
  let held: string[] | undefined = [];
  return {
    write: (line) => (held ? held.push(line) : out.write(line)),
    release: () => {
      for (const line of held ?? []) out.write(line);
      held = undefined;
    },
  };
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

/** The report of the policy file as a running vault would load it (the file it watches and reloads). */
async function policyReportCommand(dataDir: string, json: boolean): Promise<number> {
  const config = loadConfig(dataDir);
  const report = policyReport(loadPolicyFile(dataPath(config, config.policyFile)), config.retention, new Date());
  process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : policyReportMarkdown(report));
  return 0;
}
