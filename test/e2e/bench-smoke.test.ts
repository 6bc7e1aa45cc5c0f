import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('npm run bench -- --quick (smoke: it runs and reports; no timing is asserted)', function () {
  this.timeout(120_000);

  it('measures every scenario beside the baseline, without errors, and writes its JSON report', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pii-vault-bench-smoke-'));
    try {
      const out = join(dir, 'report.json');
      const run = spawnSync(process.execPath, [join(__dirname, '..', '..', 'scripts', 'bench.js'), '--quick', '--out', out], {
        encoding: 'utf8',
        timeout: 110_000,
      });
      expect(run.status, run.stderr).to.equal(0);
      expect(run.stdout).to.match(/\| baseline: express\+helmet echo/);
      const report = JSON.parse(readFileSync(out, 'utf8'));
      expect(report.rows.map((r: { scenario: string }) => r.scenario)).to.include.members([
        'tokenize, 1 value (durable)',
        'detokenize, 1 value',
        'tokenize, batch of 1,000 (random format)',
        'tokenize, batch of 1,000 (pan format, last 4 kept)',
        'detokenize, batch of 1,000',
        'mixed 80% detokenize / 20% tokenize',
      ]);
      for (const row of report.rows) {
        expect(row.errors, row.scenario).to.equal(0);
        // Answered requests, not a rate: a slow day may round a quick run's rate to zero.
        expect(row.requests, row.scenario).to.be.greaterThan(0);
      }
      expect(report.keyProviderCalls).to.be.at.most(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
