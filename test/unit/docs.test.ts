import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config';
import { ERROR_CATALOGUE, ITEM_ERROR_CODES } from '../../src/errors';
import { validatePolicy } from '../../src/policy/policy';
import { Value } from '@sinclair/typebox/value';

const ROOT = join(__dirname, '..', '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('documentation stays true', () => {
  it('README documents every error code with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      expect(readme, code).to.match(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
    }
    for (const code of ITEM_ERROR_CODES) expect(readme).to.contain(`\`${code}\``);
  });

  it('README documents every configuration key', () => {
    for (const key of Object.keys(ConfigSchema.properties)) expect(readme, key).to.contain(`\`${key}`);
  });

  it('config/policy.example.json is a valid policy', () => {
    expect(() => validatePolicy(JSON.parse(readFileSync(join(ROOT, 'config', 'policy.example.json'), 'utf8')))).not.to.throw();
  });

  it('config/config.example.json is a valid configuration', () => {
    const example = JSON.parse(readFileSync(join(ROOT, 'config', 'config.example.json'), 'utf8'));
    expect(Value.Check(ConfigSchema, example)).to.equal(true);
  });

  it('npm test runs what README "Development" says: lint, cycles, every tier once under c8, coverage floors, a pinned fuzz seed', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(scripts.test).to.match(/npm run lint .*npm run check:cycles .*MOCHA_UNIT_PARALLEL= c8 npm run test:all .*check-coverage/);
    expect(scripts['test:all']).to.match(/test:unit .*test:integration .*test:e2e/);
    expect(scripts['test:unit']).to.contain('mocha ${MOCHA_UNIT_PARALLEL---parallel --jobs 2}');
    expect(scripts['test:integration']).to.match(/FUZZ_SEED=\$\{FUZZ_SEED:-\d+\}/);
    expect(scripts.fuzz).not.to.contain('FUZZ_SEED');
    expect(JSON.parse(readFileSync(join(ROOT, '.mocharc.json'), 'utf8'))).not.to.have.property('exit');
    expect(readFileSync(join(ROOT, '.ci', 'run'), 'utf8')).to.contain('npm test');
  });

  it('README quick start names the two commands', () => {
    expect(readme).to.contain('npm ci && npm start');
    expect(readme).to.contain('npm test');
  });
});
