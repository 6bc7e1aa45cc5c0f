import { expect } from 'chai';
import fs from 'node:fs';
import { join, relative } from 'node:path';
import { writeFileAtomic } from '../../src/atomic-write';
import { tempDir } from '../helpers/test-vault';

type Call = { op: string; target: string };

/** Records the fs calls writeFileAtomic makes (it uses the fs module object), naming each fd by its path. */
function observeFs(failOn?: (call: Call) => boolean): { calls: Call[]; restore(): void } {
  const calls: Call[] = [];
  const paths = new Map<number, string>();
  const saved: Record<string, unknown> = {};
  const wrap = (name: 'openSync' | 'fsyncSync' | 'renameSync' | 'linkSync' | 'closeSync', target: (args: unknown[]) => string) => {
    const original = fs[name] as (...args: unknown[]) => unknown;
    saved[name] = original;
    (fs as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      const call = { op: name, target: target(args) };
      calls.push(call);
      if (failOn?.(call)) throw Object.assign(new Error(`injected ${name} failure`), { code: 'EIO' });
      const result = original.apply(fs, args);
      if (name === 'openSync') paths.set(result as number, args[0] as string);
      return result;
    };
  };
  wrap('openSync', (a) => String(a[0]));
  wrap('fsyncSync', (a) => paths.get(a[0] as number) ?? '?');
  wrap('renameSync', (a) => `${a[0]} -> ${a[1]}`);
  wrap('linkSync', (a) => `${a[0]} -> ${a[1]}`);
  wrap('closeSync', (a) => paths.get(a[0] as number) ?? '?');
  return {
    calls,
    restore: () => Object.assign(fs, saved),
  };
}

describe('atomic file writes', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('atomic-write-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('fsyncs the temp file before the rename and the directory after it', () => {
    const file = join(dir, 'master.key');
    fs.writeFileSync(file, 'old');
    const observed = observeFs();
    try {
      writeFileAtomic(file, 'new contents');
    } finally {
      observed.restore();
    }
    expect(fs.readFileSync(file, 'utf8')).to.equal('new contents');
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    expect(fs.readdirSync(dir)).to.deep.equal(['master.key']);

    const ops = observed.calls.map(
      (c) => `${c.op} ${c.target === dir ? 'DIR' : c.target.startsWith(join(dir, '.master.key.')) ? 'TMP' : c.target}`,
    );
    const rename = observed.calls.findIndex((c) => c.op === 'renameSync');
    expect(rename, ops.join('\n')).to.be.greaterThan(0);
    const tmp = observed.calls[rename]!.target.split(' -> ')[0]!;
    expect(relative(dir, tmp), 'the temp file is in the same directory').not.to.contain('/');
    expect(observed.calls[rename]!.target).to.equal(`${tmp} -> ${file}`);
    const fileSync = observed.calls.findIndex((c) => c.op === 'fsyncSync' && c.target === tmp);
    const fileClose = observed.calls.findIndex((c) => c.op === 'closeSync' && c.target === tmp);
    const dirSync = observed.calls.findIndex((c) => c.op === 'fsyncSync' && c.target === dir);
    expect(fileSync, ops.join('\n')).to.be.within(0, fileClose);
    expect(fileClose, ops.join('\n')).to.be.lessThan(rename);
    expect(dirSync, ops.join('\n')).to.be.greaterThan(rename);
  });

  for (const failing of ['fsyncSync', 'renameSync'] as const) {
    it(`a failed ${failing} leaves the old file intact and no temp file behind`, () => {
      const file = join(dir, 'config.json');
      fs.writeFileSync(file, '{"old":true}', { mode: 0o600 });
      const observed = observeFs((c) => c.op === failing && c.target !== dir);
      let caught: unknown;
      try {
        writeFileAtomic(file, '{"new":true}');
      } catch (err) {
        caught = err;
      } finally {
        observed.restore();
      }
      expect((caught as Error)?.message).to.equal(`injected ${failing} failure`);
      expect(fs.readFileSync(file, 'utf8')).to.equal('{"old":true}');
      expect(fs.readdirSync(dir)).to.deep.equal(['config.json']);
    });
  }

  it('exclusive refuses to replace an existing file, durably creates a new one, and leaves no temp file', () => {
    const file = join(dir, 'master.key');
    fs.writeFileSync(file, 'the only key');
    expect(() => writeFileAtomic(file, 'another key', { exclusive: true })).to.throw(/EEXIST/);
    expect(fs.readFileSync(file, 'utf8')).to.equal('the only key');
    expect(fs.readdirSync(dir)).to.deep.equal(['master.key']);

    const fresh = join(dir, 'policy.json');
    const observed = observeFs();
    try {
      writeFileAtomic(fresh, '{}', { exclusive: true });
    } finally {
      observed.restore();
    }
    expect(fs.readFileSync(fresh, 'utf8')).to.equal('{}');
    expect(fs.readdirSync(dir).sort()).to.deep.equal(['master.key', 'policy.json']);
    const link = observed.calls.findIndex((c) => c.op === 'linkSync');
    expect(observed.calls.findIndex((c) => c.op === 'fsyncSync' && c.target !== dir)).to.be.within(0, link);
    expect(observed.calls.findIndex((c) => c.op === 'fsyncSync' && c.target === dir)).to.be.greaterThan(link);
  });

  it('no module in src/ writes files by itself: every write goes through writeFileAtomic', () => {
    const src = join(__dirname, '..', '..', '..', 'src');
    const writers =
      /\b(writeFileSync|appendFileSync|renameSync|createWriteStream|writeSync|copyFileSync|cpSync|linkSync|truncateSync)\b|fs\/promises/;
    const offenders: string[] = [];
    const visit = (path: string) => {
      for (const entry of fs.readdirSync(path, { withFileTypes: true })) {
        const full = join(path, entry.name);
        if (entry.isDirectory()) visit(full);
        else if (entry.name.endsWith('.ts') && relative(src, full) !== 'atomic-write.ts') {
          fs.readFileSync(full, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (writers.test(line)) offenders.push(`${relative(src, full)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    visit(src);
    expect(offenders).to.deep.equal([]);
  });
});
