import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_KMS_CREDENTIALS, DevKms, startDevKms } from '../../src/dev-kms/server';
import { CLI, cli, initVault } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';

const ROOT = join(__dirname, '..', '..', '..');
const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;

/** Every command of the CLI as its usage names it. */
const COMMANDS = [
  'init',
  'serve',
  'start',
  'audit verify',
  'audit archive',
  'keys list',
  'keys rotate',
  'keys rewrap',
  'keys reencrypt',
  'keys retire',
  'keys destroy',
  'keys new-master-key',
  'policy report',
  'dev-kms',
];

/** A mistake on the command line: exit 2, nothing on stdout, exactly one line on stderr. */
function mistake(args: string[]): string {
  const res = cli(args);
  expect(res.status, res.stderr).to.equal(2);
  expect(res.stdout).to.equal('');
  expect(res.stderr.trimEnd().split('\n'), res.stderr).to.have.length(1);
  return res.stderr.trimEnd();
}

describe('end to end: a CLI a person can use', function () {
  this.timeout(60_000);
  let root: string;

  before(() => (root = tempDir('pii-vault-cli-usability-')));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('--version and -v print the package version', () => {
    for (const flag of ['--version', '-v']) {
      const res = cli([flag]);
      expect(res.status, res.stderr).to.equal(0);
      expect(res.stdout).to.equal(`pii-vault ${VERSION}\n`);
    }
  });

  it("every command's --help (and help COMMAND, and -h) prints just that command's usage and exits 0", function () {
    // Some 30 processes on a shared machine: a generous bound, not a speed expectation.
    this.timeout(300_000);
    for (const name of COMMANDS) {
      const words = name.split(' ');
      for (const args of [[...words, '--help'], ['help', ...words], ...(name === 'init' ? [[...words, '-h']] : [])]) {
        const res = cli(args);
        expect(res.status, `${args.join(' ')}: ${res.stderr}`).to.equal(0);
        expect(res.stdout, args.join(' ')).to.match(new RegExp(`^Usage: pii-vault ${name} `));
        for (const other of COMMANDS.filter((c) => c !== name))
          expect(res.stdout, `only ${name}`).not.to.match(new RegExp(`^(Usage: )?\\s*pii-vault ${other} `, 'm'));
        expect(res.stdout).to.match(/^Options:$/m);
      }
    }
    // --help wins over anything else on the line, even a mistake.
    expect(cli(['init', '--data-dir', join(root, 'never'), '--dta-dir', 'x', '--help']).status).to.equal(0);
  });

  it('the usage names every command, and --url/--api-key for the keys commands', () => {
    const res = cli(['--help']);
    expect(res.status).to.equal(0);
    for (const name of COMMANDS) expect(res.stdout).to.contain(`pii-vault ${name} `);
    expect(res.stdout).to.match(/pii-vault keys rotate .*--url URL.*--api-key KEY/);
    expect(res.stdout).to.contain('PII_VAULT_API_KEY');
    expect(cli(['help']).stdout).to.equal(res.stdout);
    const keys = cli(['keys', '--help']);
    expect(keys.status).to.equal(0);
    expect(keys.stdout).to.contain('pii-vault keys destroy').and.not.to.contain('pii-vault init');
    // No command at all is a mistake: the usage, on stderr, exit 2.
    const bare = cli([]);
    expect(bare.status).to.equal(2);
    expect(bare.stderr).to.equal(res.stdout);
  });

  it('an unknown command is answered in one line naming it, with a suggestion and where help is', () => {
    expect(mistake(['inti', '--data-dir', 'x'])).to.equal(
      'pii-vault: unknown command "inti" (did you mean "init"?); see "pii-vault --help"',
    );
    expect(mistake(['frobnicate'])).to.equal('pii-vault: unknown command "frobnicate"; see "pii-vault --help"');
    expect(mistake(['keys', 'rotat'])).to.equal(
      'pii-vault: unknown keys command "rotat" (did you mean "rotate"?); see "pii-vault keys --help"',
    );
    expect(mistake(['keys'])).to.match(/^pii-vault: "keys" needs a command: list, rotate, .*; see "pii-vault keys --help"$/);
    expect(mistake(['help', 'inti'])).to.match(/^pii-vault: unknown command "inti" \(did you mean "init"\?\)/);
  });

  it('an unknown or invalid option is answered in one line naming it and the command', () => {
    expect(mistake(['init', '--dta-dir', 'x'])).to.equal(
      'pii-vault init: unknown option --dta-dir (did you mean --data-dir?); see "pii-vault init --help"',
    );
    expect(mistake(['serve', '--data-dir', 'x', '--keys-file', 'k.json'])).to.equal(
      'pii-vault serve: unknown option --keys-file; see "pii-vault serve --help"',
    );
    expect(mistake(['audit', 'verify', '--data-dir'])).to.equal(
      'pii-vault audit verify: --data-dir needs a value (--data-dir DIR); see "pii-vault audit verify --help"',
    );
    expect(mistake(['init', '--data-dir', '--json'])).to.match(/^pii-vault init: --data-dir needs a value/);
    expect(mistake(['keys', 'list', '--json=yes'])).to.match(/^pii-vault keys list: --json takes no value; see/);
    expect(mistake(['init', 'extra', '--data-dir', 'x'])).to.match(/^pii-vault init: unexpected argument "extra"; see/);
    expect(mistake(['serve', '--data-dir', 'x', '--port', 'abc'])).to.equal(
      'pii-vault serve: --port must be 0–65535; see "pii-vault serve --help"',
    );
    expect(mistake(['serve'])).to.equal('pii-vault serve: --data-dir is required; see "pii-vault serve --help"');
  });

  it('keys new-master-key prints JSON with --json', () => {
    const dir = join(root, 'master-key');
    initVault(dir);
    const res = cli(['keys', 'new-master-key', '--data-dir', dir, '--json']);
    expect(res.status, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout)).to.deep.equal({ masterKeyVersion: 2, keyFile: join(dir, 'master.key') });
  });

  it('bin/pii-vault.js in a checkout that was never built says to build it', () => {
    const checkout = join(root, 'unbuilt');
    mkdirSync(join(checkout, 'bin'), { recursive: true });
    copyFileSync(CLI, join(checkout, 'bin', 'pii-vault.js'));
    const res = spawnSync(process.execPath, [join(checkout, 'bin', 'pii-vault.js'), '--version'], { encoding: 'utf8' });
    expect(res.status).to.equal(1);
    expect(res.stderr).to.equal(`pii-vault: not built yet (no dist/ in ${checkout}): run \`npm run build\` there first\n`);
  });

  it('npx runs the checkout’s own pii-vault (as the README says), offline', () => {
    const npx = spawnSync('npx', ['--offline', '--no', '--', 'pii-vault', '--version'], { cwd: ROOT, encoding: 'utf8', timeout: 50_000 });
    expect(npx.status, npx.stderr).to.equal(0);
    expect(npx.stdout).to.equal(`pii-vault ${VERSION}\n`);
  });

  it('start: stdout is the listening line, then JSON lines only; the starter keys go to stderr, once', async () => {
    const dir = join(root, 'start-stdout');
    const run = async () => {
      const proc = spawn(process.execPath, [CLI, 'start', '--data-dir', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        proc.stdout.on('data', (c: Buffer) => {
          stdout += c.toString();
          const match = /^listening on (http:\/\/\S+)$/m.exec(stdout);
          if (match) resolve(match[1]);
        });
        proc.once('exit', (code) => reject(new Error(`start exited ${code}: ${stderr}`)));
      });
      expect((await fetch(`${url}/v1/keys`)).status).to.equal(401);
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      await exited;
      return { stdout, stderr };
    };
    const first = await run();
    const [listening, ...logLines] = first.stdout.trimEnd().split('\n');
    expect(listening).to.match(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    expect(logLines.length, 'pino lines after the listening line').to.be.greaterThan(0);
    for (const line of logLines) expect(() => JSON.parse(line), line).not.to.throw();
    expect(first.stdout).not.to.contain('pvk_');
    expect(first.stderr).to.match(/^ {2}billing\s+pvk_/m);
    const second = await run();
    expect(second.stdout.split('\n')[0]).to.match(/^listening on /);
    expect(second.stdout + second.stderr, 'the keys are shown only on the first run').not.to.contain('pvk_');
  });

  describe('KMS failures at start-up name their cause (through the dev KMS)', () => {
    let kms: DevKms;
    let dir: string;

    before(async () => {
      kms = await startDevKms();
      const { arn } = await kms.createKey('cli usability');
      kms.createAlias('alias/pii-vault', arn);
      dir = join(root, 'kms');
      initVault(dir, { logLevel: 'warn' });
    });
    after(() => kms.close());

    /** `serve` with the vault's KEK in KMS, in an environment holding only what is given (no AWS_* from the caller). */
    const serveWithKms = (kmsSettings: Record<string, unknown>, env: NodeJS.ProcessEnv) => {
      const file = join(dir, 'config.json');
      const config = JSON.parse(readFileSync(file, 'utf8'));
      writeFileSync(
        file,
        JSON.stringify({ ...config, keyProvider: { type: 'aws-kms', kms: { region: kms.region, maxAttempts: 1, ...kmsSettings } } }),
      );
      const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_')));
      // Not spawnSync: the dev KMS answers from this process's event loop.
      const proc = spawn(process.execPath, [CLI, 'serve', '--data-dir', dir, '--port', '0'], { env: { ...base, ...env } });
      let stderr = '';
      proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      return new Promise<{ status: number | null; stderr: string }>((resolve) =>
        proc.once('close', (status) => resolve({ status, stderr })),
      );
    };
    const credentials = { AWS_ACCESS_KEY_ID: DEV_KMS_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: DEV_KMS_CREDENTIALS.secretAccessKey };

    it('a missing alias is "not found: check keyProvider.kms.keyId", not "try again later"', async () => {
      const res = await serveWithKms({ keyId: 'alias/no-such-alias', endpoint: kms.url }, credentials);
      expect(res.status).to.equal(1);
      expect(res.stderr).to.match(/KMS key\/alias not found: check keyProvider\.kms\.keyId/);
      expect(res.stderr)
        .to.contain('alias/no-such-alias')
        .and.not.to.match(/try again later|unavailable/);
    });

    it('missing AWS credentials are named as such, not as an unreachable KMS', async () => {
      const none = join(root, 'no-such-aws-file');
      const res = await serveWithKms(
        { keyId: 'alias/pii-vault', endpoint: kms.url },
        { HOME: root, AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: none, AWS_SHARED_CREDENTIALS_FILE: none },
      );
      expect(res.status).to.equal(1);
      expect(res.stderr).to.match(/no AWS credentials found \(set AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY/);
      expect(res.stderr).not.to.match(/unreachable/);
    });

    it('a refused connection names the endpoint', async () => {
      const res = await serveWithKms({ keyId: 'alias/pii-vault', endpoint: 'http://127.0.0.1:1' }, credentials);
      expect(res.status).to.equal(1);
      expect(res.stderr).to.match(/unreachable at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
    });
  });
});
