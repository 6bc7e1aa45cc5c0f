import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfigFile } from '../../src/config';
import { tempDir } from '../helpers/test-vault';

/**
 * There is no Docker daemon in the test environment (scripts/docker-smoke.sh builds and runs the image where there is,
 * and CI calls it): these tests hold the Dockerfile, .dockerignore, docker-compose.yml and the entry point to the
 * properties the README promises.
 */
const REPO = join(__dirname, '..', '..', '..');
const read = (file: string) => readFileSync(join(REPO, file), 'utf8');

/** The Dockerfile's stages by name, each with its instruction lines (continuations joined). */
function stages(dockerfile: string): Map<string, string[]> {
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));
  const result = new Map<string, string[]>();
  let current: string[] = [];
  for (const line of lines) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) result.set(from[1] ?? `stage${result.size}`, (current = []));
    current.push(line);
  }
  return result;
}

describe('container image and compose example', () => {
  const dockerfile = read('Dockerfile');
  const all = stages(dockerfile);
  const runtime = [...all.values()].at(-1)!;
  const runtimeText = runtime.join('\n');

  it('fetches no BuildKit frontend and is multi-stage, the runtime stage last', () => {
    expect(dockerfile).to.not.match(/^#\s*syntax\s*=/im);
    expect(all.size).to.be.at.least(3);
    expect([...all.keys()].at(-1)).to.equal('runtime');
  });

  it('bases every stage on a Node LTS that better-sqlite3 supports, not Node 20', () => {
    const version = Number(/^ARG NODE_VERSION=(\d+)$/m.exec(dockerfile)![1]);
    expect(version % 2, 'an even (LTS) major').to.equal(0);
    expect(version).to.be.at.least(22);
    const engines: string = JSON.parse(read('node_modules/better-sqlite3/package.json')).engines.node;
    expect(engines.split('||').map((r) => r.trim())).to.include(`${version}.x`);
    for (const stage of all.values()) expect(stage[0]).to.match(/^FROM (node:\$\{NODE_VERSION\}-\S+|build) /);
  });

  it('runtime: production dependencies only, no sources, tests, scripts or compiler; non-root; data on a volume', () => {
    expect(all.get('deps')!.join('\n')).to.match(/npm ci --omit=dev/);
    expect(all.get('deps')!.join('\n')).to.match(/rm -rf build\/Release\/obj /);
    const copies = runtime.filter((l) => /^COPY/.test(l));
    expect(
      copies.every((l) => /--from=(deps|build) \/app\/(node_modules|dist) |^COPY package\.json |^COPY bin\/\S+ bin\//.test(l)),
      copies.join('\n'),
    ).to.equal(true);
    expect(runtimeText).to.not.match(/apt-get|g\+\+|npm ci|COPY (src|test|scripts)/);
    expect(runtime.filter((l) => /^USER /.test(l))).to.deep.equal(['USER node']);
    expect(runtimeText).to.match(/^VOLUME \["\/data"\]$/m);
  });

  it('has a HEALTHCHECK that uses node (the image has no curl) on /readyz', () => {
    const healthcheck = runtime.find((l) => /^HEALTHCHECK/.test(l))!;
    expect(healthcheck).to.match(/CMD \["node", "-e", ".*\/readyz/);
    expect(healthcheck).to.not.match(/curl|wget/);
  });

  it('.dockerignore keeps data, keys and dependencies away from the builder', () => {
    const ignored = read('.dockerignore').split('\n');
    for (const pattern of ['**/.vault*', '**/node_modules', 'dist', '*.key', '.git', 'test']) expect(ignored).to.include(pattern);
  });

  it('compose: vault and dev KMS; stop grace period longer than shutdownTimeoutMs; master key apart from the data volume', () => {
    const compose = read('docker-compose.yml');
    expect(compose).to.match(/^ {2}vault:$/m);
    expect(compose).to.match(/^ {2}dev-kms:$/m);
    expect(compose).to.match(/target: dev-kms/);
    const grace = /stop_grace_period: (\d+)s/.exec(compose)!;
    expect(Number(grace[1]) * 1000).to.be.greaterThan(defaultConfigFile().shutdownTimeoutMs);
    expect(compose).to.match(/PII_VAULT_MASTER_KEY: \$\{PII_VAULT_MASTER_KEY:\?/);
    expect(compose).to.match(/- vault-data:\/data/);
    expect(compose).to.match(/'127\.0\.0\.1:8080:8080'/);
  });

  describe('entry point (bin/docker-entrypoint.sh)', () => {
    let root: string;
    before(() => (root = tempDir('pii-vault-entrypoint-')));
    after(() => rmSync(root, { recursive: true, force: true }));
    const run = (mode: number) => {
      const volume = join(root, `v${mode.toString(8)}`);
      mkdirSync(volume);
      chmodSync(volume, mode);
      return spawnSync('sh', [join(REPO, 'bin', 'docker-entrypoint.sh'), 'help'], {
        encoding: 'utf8',
        env: { ...process.env, PII_VAULT_DATA_VOLUME: volume },
      });
    };

    it('accepts a private or group-writable volume (Kubernetes fsGroup) and runs the CLI', () => {
      for (const mode of [0o700, 0o2770]) {
        const result = run(mode);
        expect(result.status, result.stderr).to.equal(0);
        expect(result.stdout).to.match(/^Usage:/);
      }
    });

    it('refuses a volume every user may write, in one line naming it', () => {
      const result = run(0o777);
      expect(result.status).to.equal(1);
      expect(result.stderr.trim().split('\n')).to.have.length(1);
      expect(result.stderr).to.match(/data volume .*v777 is writable by every user/);
    });

    it('refuses a volume the vault user cannot write, in one line saying how to fix it', function () {
      if (process.getuid?.() === 0) {
        // root may write anywhere: run the entry point as nobody instead (skipped where setpriv is missing)
        const volume = join(root, 'readonly');
        mkdirSync(volume);
        chmodSync(volume, 0o555);
        chmodSync(root, 0o755);
        const result = spawnSync(
          'setpriv',
          ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', join(REPO, 'bin', 'docker-entrypoint.sh'), 'help'],
          {
            encoding: 'utf8',
            env: { ...process.env, PII_VAULT_DATA_VOLUME: volume },
          },
        );
        if (result.error) this.skip();
        expect(result.status, result.stderr).to.equal(1);
        expect(result.stderr).to.match(/is not writable by the vault's user \(uid 65534, gid 65534\).*chown 65534:65534.*fsGroup: 65534/);
        return;
      }
      const result = run(0o500);
      expect(result.status).to.equal(1);
      expect(result.stderr).to.match(/is not writable by the vault's user/);
    });
  });
});
