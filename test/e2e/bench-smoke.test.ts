import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_URL, requirePostgres, sql } from '../helpers/postgres';

const SCENARIOS = [
  'tokenize, 1 value (durable)',
  'detokenize, 1 value',
  'tokenize, batch of 1,000 (random format)',
  'tokenize, batch of 1,000 (pan format, last 4 kept)',
  'detokenize, batch of 1,000',
  'mixed 80% detokenize / 20% tokenize',
  'tokenize at a fixed 2,000 req/s (open loop)',
  'detokenize at a fixed 2,000 req/s (open loop)',
];

interface ReportRow {
  scenario: string;
  store?: string;
  instances?: number;
  requests: number;
  errors: number;
  auditRows?: number;
}

/** Runs `bench --quick` with `args` and returns its stdout and JSON report. */
function runBench(args: string[]): { stdout: string; report: any } {
  const dir = mkdtempSync(join(tmpdir(), 'pii-vault-bench-smoke-'));
  try {
    const out = join(dir, 'report.json');
    const run = spawnSync(process.execPath, [join(__dirname, '..', '..', 'scripts', 'bench.js'), '--quick', '--out', out, ...args], {
      encoding: 'utf8',
      timeout: 280_000,
      env: { ...process.env, PII_VAULT_BENCH_DATABASE_URL: ADMIN_URL },
    });
    expect(run.status, run.stderr).to.equal(0);
    return { stdout: run.stdout, report: JSON.parse(readFileSync(out, 'utf8')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every row answered requests without an error, and each answered request appended its audit row. */
function expectCleanRows(rows: ReportRow[]): void {
  for (const row of rows) {
    const name = `${row.scenario} (${row.store ?? 'echo'} ×${row.instances ?? 1})`;
    expect(row.errors, name).to.equal(0);
    // Answered requests, not a rate: a slow day may round a quick run's rate to zero.
    expect(row.requests, name).to.be.greaterThan(0);
    if (row.store) expect(row.auditRows, name).to.be.at.least(row.requests);
  }
}

describe('npm run bench -- --quick (smoke: it runs and reports; no timing is asserted)', function () {
  this.timeout(300_000);

  it('measures every scenario beside the baseline, without errors, and writes its JSON report', () => {
    const { stdout, report } = runBench([]);
    expect(stdout).to.match(/\| baseline: express\+helmet echo/);
    const rows: ReportRow[] = report.rows;
    expect(rows.filter((r) => r.store === 'sqlite').map((r) => r.scenario)).to.have.members(SCENARIOS);
    expect(rows.some((r) => r.store === 'postgres')).to.equal(false);
    expectCleanRows(rows);
    expect(report.keyProviderCalls).to.be.at.most(4);
  });

  describe('--store postgres', () => {
    before(async function () {
      await requirePostgres(this);
    });

    it('measures every scenario on PostgreSQL with 1, 2 and 3 instances beside SQLite, then drops its database', async () => {
      const { stdout, report } = runBench(['--store', 'postgres']);
      const rows: ReportRow[] = report.rows;
      expect(rows.filter((r) => r.store === 'sqlite').map((r) => r.scenario)).to.have.members(SCENARIOS);
      for (const instances of [1, 2, 3]) {
        const onPostgres = rows.filter((r) => r.store === 'postgres' && r.instances === instances);
        expect(
          onPostgres.map((r) => r.scenario),
          `postgres ×${instances}`,
        ).to.have.members(SCENARIOS);
      }
      expectCleanRows(rows);
      expect(stdout).to.match(/PostgreSQL beside SQLite/);
      expect(report.targets.map((t: { target: string }) => t.target)).to.include.members([
        'tokenize, 1 value (durable): postgres ×1 ≥ 0.5× sqlite',
        'detokenize, 1 value: postgres ×1 ≥ 0.7× sqlite',
        'tokenize, batch of 1,000 (random format): postgres ×1 ≥ 25,000 values/s',
      ]);
      expect(report.keyProviderCalls).to.be.at.most(4);
      expect(report.postgresDatabase).to.match(/^pii_vault_bench_/);
      const left = await sql(ADMIN_URL, 'SELECT 1 FROM pg_database WHERE datname = $1', [report.postgresDatabase]);
      expect(left, 'the run drops its database').to.deep.equal([]);
    });
  });
});

describe('npm run bench:subject-keys -- --quick (smoke: it runs and reports; no timing is asserted)', function () {
  this.timeout(120_000);

  it('measures tokenize with per-subject keys off and on for every scenario and reports the ratio', () => {
    const run = spawnSync(process.execPath, [join(__dirname, '..', '..', 'scripts', 'bench-subject-keys.js'), '--quick'], {
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.contain('per-subject keys off vs on');
    for (const scenario of [
      'single value, new subject each',
      'single value, returning subject',
      'batch of 100, new subject each',
      'batch of 100, returning subjects',
    ]) {
      expect(run.stdout, scenario).to.match(new RegExp(`'${scenario}'\\s*│\\s*\\d+\\s*│\\s*\\d+\\s*│\\s*[\\d.]+`));
    }
  });
});
