/**
 * The command line's grammar: which words name a command, which options each command takes, and
 * the answers to a mistake — one line naming it, with a pointer to that command's --help — instead
 * of Node's raw parser message. The commands themselves (and what they do) are listed in main.ts.
 */
import { parseArgs } from 'node:util';

/** Every option any command takes; each command names the ones it accepts. */
const OPTIONS = {
  'data-dir': { type: 'string', arg: 'DIR', doc: 'the vault data directory' },
  url: { type: 'string', arg: 'URL', doc: 'the running vault (default: PII_VAULT_URL, else http://127.0.0.1:8080)' },
  'api-key': {
    type: 'string',
    arg: 'KEY',
    doc: 'API key of a principal with the grants the command needs (default: PII_VAULT_API_KEY; prefer it, flags end up in shell history)',
  },
  tenant: { type: 'string', arg: 'T', doc: 'one tenant (default: the caller’s default tenant)' },
  all: { type: 'boolean', doc: 'every tenant' },
  version: { type: 'string', arg: 'N', doc: 'the data-key version' },
  confirm: { type: 'string', arg: 'TEXT', doc: 'the exact confirmation "destroy T/data/vN"' },
  'kms-key-id': { type: 'string', arg: 'ID', doc: 'switch the KEK to this KMS key (keyProvider.kms.keyId or one of allowedKeyIds)' },
  'to-local': { type: 'boolean', doc: 'switch the KEK back to the local master key' },
  before: { type: 'string', arg: 'SEQ', doc: 'archive the rows before this row number' },
  out: { type: 'string', arg: 'FILE', doc: 'the archive file to create' },
  archive: { type: 'string', arg: 'FILE', doc: 'verify this archive file against the vault' },
  wait: { type: 'boolean', doc: 'follow the job to its end, with a progress bar on stderr' },
  data: { type: 'string', arg: 'FILE', doc: 'where the dev KMS keeps its keys (default: in memory)' },
  port: { type: 'string', arg: 'N', doc: 'TCP port to listen on (0 picks a free one)' },
  host: { type: 'string', arg: 'H', doc: 'address to listen on (default 127.0.0.1)' },
  'dry-run': { type: 'boolean', doc: 'only count what would be deleted (per tenant and type); nothing is deleted' },
  json: { type: 'boolean', doc: 'print JSON instead of text' },
  force: { type: 'boolean', doc: 'on an existing vault, re-issue the starter API keys (keys, records and settings are kept)' },
  'keys-file': { type: 'string', arg: 'FILE', doc: 'write the starter API keys to FILE (mode 0600) and print only its path' },
  to: { type: 'string', arg: 'URL', doc: 'the empty PostgreSQL database to copy the vault into (postgres://…)' },
  subject: { type: 'string', arg: 'ID', doc: 'the data subject id (default: read from standard input; a flag ends up in shell history)' },
  from: { type: 'string', arg: 'TIME', doc: 'only decisions at or after this ISO 8601 time (with a zone)' },
  until: { type: 'string', arg: 'TIME', doc: 'only decisions before this ISO 8601 time (with a zone)' },
  grant: { type: 'string', arg: 'P,P', doc: 'purposes to add to the consented set (comma-separated)' },
  withdraw: { type: 'string', arg: 'P,P', doc: 'purposes to withdraw from the consented set (comma-separated)' },
  help: { type: 'boolean', doc: 'show this help' },
} as const;

export type OptionName = keyof typeof OPTIONS;

/** What a command receives: the options given (booleans not given are false). */
export type CommandValues = { [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };

const PARSE_OPTIONS = Object.fromEntries(
  Object.entries(OPTIONS).map(([name, o]) => [
    name,
    { type: o.type, ...(o.type === 'boolean' ? { default: false } : {}), ...(name === 'help' ? { short: 'h' } : {}) },
  ]),
) as Record<string, { type: 'string' | 'boolean'; default?: boolean; short?: string }>;

export interface CommandSpec {
  /** One word, or a group and a word (`keys rotate`). */
  name: string;
  /** The arguments after the command's name, as shown in the usage. */
  synopsis: string;
  summary: string;
  options: readonly OptionName[];
  /** Lines shown under the options in this command's --help. */
  notes?: readonly string[];
  run(values: CommandValues): Promise<number>;
}

/**
 * A mistake on the command line: exit 2, one line naming it, prefixed with the command it was made
 * in and ending with a pointer to the help that applies (that command's, a group's, or the whole usage).
 */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
    readonly helpFor: string | undefined = command,
  ) {
    super(message);
    this.name = 'UsageError';
  }

  /** The line printed on stderr. */
  line(): string {
    return `pii-vault${this.command ? ` ${this.command}` : ''}: ${this.message}; see "pii-vault ${this.helpFor ? `${this.helpFor} ` : ''}--help"`;
  }
}

type CommandLine =
  { kind: 'version' } | { kind: 'help'; text: string; exitCode: number } | { kind: 'run'; command: CommandSpec; values: CommandValues };

export function parseCommandLine(argv: string[], commands: readonly CommandSpec[]): CommandLine {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) return { kind: 'version' };
  const { tokens, positionals } = parseArgs({ args: argv, options: PARSE_OPTIONS, allowPositionals: true, strict: false, tokens: true });
  const wantsHelp = tokens.some((t) => t.kind === 'option' && t.name === 'help');
  if (positionals.length === 0) return { kind: 'help', text: usage(commands), exitCode: wantsHelp ? 0 : 2 };
  if (positionals[0] === 'help') return { kind: 'help', text: helpFor(positionals.slice(1), commands), exitCode: 0 };

  const { command, rest } = findCommand(positionals, commands, wantsHelp);
  if (typeof command === 'string') return { kind: 'help', text: command, exitCode: 0 };
  if (wantsHelp) return { kind: 'help', text: commandHelp(command), exitCode: 0 };
  const mistake = (message: string) => new UsageError(message, command.name);
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const name = token.name as OptionName;
    if (!command.options.includes(name)) {
      const hint = suggest(token.name, command.options);
      throw mistake(`unknown option ${token.rawName}${hint ? ` (did you mean --${hint}?)` : ''}`);
    }
    const spec = OPTIONS[name];
    if (spec.type === 'boolean' && token.inlineValue) throw mistake(`${token.rawName} takes no value`);
    if (spec.type === 'string' && (token.value === undefined || (!token.inlineValue && /^-./.test(token.value)))) {
      throw mistake(`${token.rawName} needs a value (${token.rawName} ${spec.arg})`);
    }
  }
  if (rest.length) throw mistake(`unexpected argument "${rest[0]}"`);
  return { kind: 'run', command, values: parseStrict(argv, command.name).values };
}

/** Parsed again, strictly, once checked: the values typed by OPTIONS. */
function parseStrict(argv: string[], command: string): { values: CommandValues } {
  try {
    return parseArgs({ args: argv, options: PARSE_OPTIONS, allowPositionals: true, strict: true }) as { values: CommandValues };
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0], command);
  }
}

/** The command the leading words name; for a bare group word, its usage (when help was asked for). */
function findCommand(
  positionals: string[],
  commands: readonly CommandSpec[],
  wantsHelp: boolean,
): { command: CommandSpec | string; rest: string[] } {
  const [first, second] = positionals;
  const groupCommands = commands.filter((c) => c.name.startsWith(`${first} `));
  if (groupCommands.length === 0) {
    const command = commands.find((c) => c.name === first);
    if (!command) throw unknownCommand(first, commands);
    return { command, rest: positionals.slice(1) };
  }
  const words = groupCommands.map((c) => c.name.slice(first.length + 1));
  if (second === undefined) {
    if (wantsHelp) return { command: usage(groupCommands), rest: [] };
    throw new UsageError(`"${first}" needs a command: ${words.join(', ')}`, undefined, first);
  }
  const command = groupCommands.find((c) => c.name === `${first} ${second}`);
  if (!command) {
    const hint = suggest(second, words);
    throw new UsageError(`unknown ${first} command "${second}" (${hint ? `did you mean "${hint}"?` : words.join(', ')})`, undefined, first);
  }
  return { command, rest: positionals.slice(2) };
}

function helpFor(words: string[], commands: readonly CommandSpec[]): string {
  if (words.length === 0) return usage(commands);
  const group = commands.filter((c) => c.name.startsWith(`${words[0]} `));
  if (words.length === 1 && group.length) return usage(group);
  const command = commands.find((c) => c.name === words.join(' '));
  if (!command) throw unknownCommand(words.join(' '), commands);
  return commandHelp(command);
}

function unknownCommand(word: string, commands: readonly CommandSpec[]): UsageError {
  const hint = suggest(word, [...new Set(commands.map((c) => c.name.split(' ')[0]))]);
  return new UsageError(`unknown command "${word}"${hint ? ` (did you mean "${hint}"?)` : ''}`);
}

/** The whole usage (or a group's): one synopsis and summary per command. */
function usage(commands: readonly CommandSpec[]): string {
  const lines = ['Usage:'];
  for (const c of commands) lines.push(`  pii-vault ${c.name} ${c.synopsis}`.trimEnd(), `      ${c.summary}`);
  lines.push(
    '',
    'The keys commands (but new-master-key) call a running vault: --url URL or PII_VAULT_URL (default http://127.0.0.1:8080),',
    'and --api-key KEY or PII_VAULT_API_KEY, a key of a principal with keys:* grants (e.g. security).',
    '',
    'pii-vault COMMAND --help (or pii-vault help COMMAND) shows one command; pii-vault --version its version.',
  );
  return lines.join('\n') + '\n';
}

function commandHelp(c: CommandSpec): string {
  const options = [...c.options, 'help' as const].map((name) => {
    const o = OPTIONS[name];
    return [`--${name}${'arg' in o ? ` ${o.arg}` : ''}`, o.doc];
  });
  const width = Math.max(...options.map(([flag]) => flag.length));
  return (
    [
      `Usage: pii-vault ${c.name} ${c.synopsis}`.trimEnd(),
      '',
      `${c.summary[0].toUpperCase()}${c.summary.slice(1)}.`,
      '',
      'Options:',
      ...options.map(([flag, doc]) => `  ${flag.padEnd(width)}  ${doc}`),
      ...(c.notes?.length ? ['', ...c.notes] : []),
    ].join('\n') + '\n'
  );
}

/** The closest candidate within two edits, for "did you mean". */
function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

/** Levenshtein distance, counting a swap of neighbours as one edit (`inti` → `init`). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}
