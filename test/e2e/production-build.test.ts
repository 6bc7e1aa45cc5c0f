import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tempDir } from '../helpers/test-vault';

const REPO = join(__dirname, '..', '..', '..');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** What the container image is built from, checked without Docker (there is no daemon here). */
describe('end to end: the production build and the container recipe', function () {
  this.timeout(180_000);
  // Inside the checkout, so the compiled code finds node_modules as it does in the image's /app.
  const out = join(REPO, 'dist', 'production-build-check');
  const run = (args: string[]) =>
    spawnSync(
      process.execPath,
      ['-e', `require(${JSON.stringify(join(out, 'dist', 'src', 'cli', 'main.js'))}).main(${JSON.stringify(args)})`],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );

  before(() => {
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    copyFileSync(join(REPO, 'package.json'), join(out, 'package.json'));
    const tsc = spawnSync(
      process.execPath,
      [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'tsconfig.build.json'), '--outDir', join(out, 'dist')],
      { encoding: 'utf8' },
    );
    expect(tsc.status, tsc.stdout + tsc.stderr).to.equal(0);
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  it('compiles src/ only: no tests, no scripts, no dev KMS', () => {
    const files = filesUnder(join(out, 'dist')).map((f) => relative(join(out, 'dist'), f));
    expect(files).to.include('src/cli/main.js');
    expect(files.filter((f) => !f.startsWith('src/'))).to.deep.equal([]);
    expect(files.filter((f) => f.startsWith('src/dev-kms/'))).to.deep.equal([]);
  });

  it('runs from the production build: init --keys-file works, and dev-kms explains that it is not there', () => {
    const root = tempDir('pii-vault-prod-');
    try {
      const keysFile = join(root, 'keys.json');
      const init = run(['init', '--data-dir', join(root, 'vault'), '--keys-file', keysFile]);
      expect(init.status, init.stderr).to.equal(0);
      expect(init.stdout).not.to.contain('pvk_');
      expect(statSync(keysFile).mode & 0o777).to.equal(0o600);
      const kms = run(['dev-kms', '--port', '0']);
      expect(kms.status).to.equal(1);
      expect(kms.stderr).to.match(/dev KMS is not part of this build/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('the Dockerfile builds with tsconfig.build.json, installs only production dependencies and keeps the keys out of the log', () => {
    const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages.length, 'multi-stage').to.be.at.least(2);
    const final = stages[stages.length - 1];
    expect(dockerfile).to.match(/npm run build:production/);
    expect(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).scripts['build:production']).to.contain('tsconfig.build.json');
    expect(dockerfile).not.to.match(/^COPY (test|scripts)\b/m);
    // node_modules come from a stage that installed production dependencies only (never the build stage's).
    const from = /^COPY --from=(\w[\w-]*) \/app\/node_modules/m.exec(final)?.[1];
    const installer = from === undefined ? final : stages.find((stage) => stage.split('\n')[0].endsWith(` AS ${from}`))!;
    expect(installer).to.match(/npm ci --omit=dev/);
    expect(installer).not.to.match(/npm (ci|install)(?! --omit=dev)/);
    expect(final).to.match(/^CMD .*"--keys-file", "\/data\/[^"]+"/m);
  });

  it('the README publishes the container’s plain-HTTP port on loopback only', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const published = [...readme.matchAll(/docker run[^\n]*?-p (\S+)/g)].map((m) => m[1]);
    expect(published.length).to.be.at.least(1);
    for (const port of published) expect(port, port).to.match(/^127\.0\.0\.1:/);
  });
});
