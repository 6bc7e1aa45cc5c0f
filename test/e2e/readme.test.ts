import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CLI } from '../helpers/processes';
import { tempDir } from '../helpers/test-vault';

/**
 * The README's shell walkthroughs are run, so an example cannot go stale. Every ```sh block is
 * marked `sh runnable` (run here, in order, in one bash with `set -euo pipefail`, in a scratch
 * directory, with `pii-vault` on PATH) or `sh no-run` (needs what a test cannot have: npm ci, Docker,
 * a real AWS account). A runnable block's output comments are checked against what it printed, in
 * order: `# {…}` / `# […]` lines are JSON lines, `# > …` lines are text lines; `…` stands for
 * anything, and example tokens stand for any token of their shape and length.
 */
const REPO = join(__dirname, '..', '..', '..');
const README = readFileSync(join(REPO, 'README.md'), 'utf8');

interface Block {
  line: number;
  code: string;
  expected: string[];
}

function shellBlocks(markdown: string): { info: string; line: number; code: string }[] {
  const blocks: { info: string; line: number; code: string }[] = [];
  const fence = /^( *)```(sh\b[^\n]*)\n([\s\S]*?)^\1```$/gm;
  for (let m; (m = fence.exec(markdown));) {
    const indent = m[1].length;
    const code = m[3]
      .split('\n')
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join('\n');
    blocks.push({ info: m[2].trim(), line: markdown.slice(0, m.index).split('\n').length, code });
  }
  return blocks;
}

const OUTPUT = /^\s*# ([{[].*|> .*)$/;

function runnableBlocks(markdown: string, ports: Record<string, string>): Block[] {
  return shellBlocks(markdown)
    .filter((b) => b.info === 'sh runnable')
    .map((b) => {
      let code = b.code;
      for (const [from, to] of Object.entries(ports)) code = code.split(from).join(to);
      const expected = code
        .split('\n')
        .map((l) => OUTPUT.exec(l)?.[1])
        .filter((l): l is string => l !== undefined)
        .map((l) => (l.startsWith('> ') ? l.slice(2) : l));
      return { line: b.line, code, expected };
    });
}

/**
 * A documented output line as a pattern: `…` is a wildcard; an example token (`tok_…`, or digits as a
 * `token`, in `tokens` or alone on the line) matches any token of its shape and length.
 */
function outputPattern(documented: string): RegExp {
  const parts = documented.split(/(…|tok_[0-9A-Za-z]+|(?<="token":")\d+(?=")|(?<="tokens":\[")\d+(?="\])|^\d{9,19}$)/);
  const source = parts
    .map((part, i) => {
      if (i % 2 === 0) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      if (part === '…') return '.*?';
      if (part.startsWith('tok_')) return `tok_[0-9A-Za-z]{${part.length - 4}}`;
      return `\\d{${part.length}}`;
    })
    .join('');
  return new RegExp(`^${source}$`);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('README: the shell walkthroughs run as written', function () {
  this.timeout(180_000);

  it('every sh block is marked runnable or no-run', () => {
    const unmarked = shellBlocks(README).filter((b) => b.info !== 'sh runnable' && b.info !== 'sh no-run');
    expect(unmarked.map((b) => `line ${b.line}: ${b.info}`)).to.deep.equal([]);
  });

  it('documented outputs become patterns that check shapes and token lengths', () => {
    const pattern = outputPattern('{"items":[{"token":"3879111028471111","type":"pan"},{"token":"tok_AbC","type":"email"}],"at":"…"}');
    expect(pattern.test('{"items":[{"token":"1234567890121111","type":"pan"},{"token":"tok_xY9","type":"email"}],"at":"2026"}')).to.equal(
      true,
    );
    expect(pattern.test('{"items":[{"token":"12345678901211","type":"pan"},{"token":"tok_xY9","type":"email"}],"at":"2026"}')).to.equal(
      false,
    );
    expect(pattern.test('{"items":[{"token":"1234567890121111","type":"pan"},{"token":"tok_xY90","type":"email"}],"at":""}')).to.equal(
      false,
    );
    expect(outputPattern('3879111028471111').test('1234567890121111')).to.equal(true);
    expect(outputPattern('{"value":"4111111111111111"}').test('{"value":"4111111111111112"}')).to.equal(false);
  });

  it('runs every runnable block in order, each exits 0 and prints what is documented', async () => {
    const root = tempDir('pii-vault-readme-');
    const bin = join(root, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'pii-vault'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
    chmodSync(join(bin, 'pii-vault'), 0o755);
    const ports = { '8080': String(await freePort()), '4599': String(await freePort()) };
    const blocks = runnableBlocks(README, ports);
    expect(blocks.length).to.be.at.least(6);
    const script = ['set -euo pipefail', ...blocks.flatMap((b, i) => [`echo "@@start ${i}@@"`, b.code, `echo "@@end ${i}@@"`])].join('\n');
    // The vault listens on the port its walkthrough's $V names (PII_VAULT_PORT is a documented setting).
    const env: NodeJS.ProcessEnv = {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: process.env.HOME,
      TMPDIR: root,
      LANG: 'C.UTF-8',
      PII_VAULT_PORT: ports['8080'],
    };
    const bash = spawn('bash', ['-c', script], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    bash.stdout.on('data', (c) => (stdout += c));
    bash.stderr.on('data', (c) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => bash.once('exit', resolve));
    try {
      process.kill(-bash.pid!, 'SIGKILL'); // the servers the walkthrough left running in the background
    } catch {
      // already gone
    }
    rmSync(root, { recursive: true, force: true });
    const reached = [...stdout.matchAll(/^@@end (\d+)@@$/gm)].length;
    const failedAt = blocks[reached];
    expect(code, `README block at line ${failedAt?.line} failed:\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`).to.equal(0);
    blocks.forEach((block, i) => {
      const printed = stdout.split(`@@start ${i}@@\n`)[1].split(`@@end ${i}@@`)[0].split('\n');
      let from = 0;
      for (const documented of block.expected) {
        const pattern = outputPattern(documented);
        const at = printed.findIndex((line, j) => j >= from && pattern.test(line));
        expect(
          at,
          `README line ${block.line}: documented output\n  ${documented}\nnot printed; it printed:\n  ${printed.join('\n  ')}`,
        ).to.be.at.least(0);
        from = at + 1;
      }
    });
  });
});
