import { expect } from 'chai';
import { join } from 'node:path';

interface MadgeResult {
  circular(): string[][];
  obj(): Record<string, string[]>;
}
// madge ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const madge = require('madge') as (path: string, config: object) => Promise<MadgeResult>;

const ROOT = join(__dirname, '..', '..', '..');

/** Which top-level parts of src/ each part must never import: the arrows of README "Development" → "Layers". */
const FORBIDDEN: Record<string, string[]> = {
  domain: ['contract', 'policy', 'crypto', 'keys', 'store', 'audit', 'service', 'http', 'app', 'cli'],
  contract: ['policy', 'crypto', 'keys', 'store', 'audit', 'service', 'http', 'app', 'cli'],
  store: ['contract', 'policy', 'crypto', 'keys', 'audit', 'service', 'http', 'app', 'cli'],
  crypto: ['contract', 'policy', 'keys', 'store', 'audit', 'service', 'http', 'app', 'cli'],
  keys: ['contract', 'policy', 'audit', 'service', 'http', 'app', 'cli'],
  audit: ['contract', 'policy', 'service', 'http', 'app', 'cli'],
  policy: ['crypto', 'keys', 'store', 'audit', 'service', 'http', 'app', 'cli'],
  service: ['http', 'app', 'cli'],
  http: ['app', 'cli'],
  app: ['cli'],
};

function part(file: string): string {
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : file.replace(/\.ts$/, '');
}

describe('layers: the import graph of src/', function () {
  this.timeout(60_000);
  let graph: MadgeResult;

  before(async () => {
    graph = await madge(join(ROOT, 'src'), { fileExtensions: ['ts'], tsConfig: join(ROOT, 'tsconfig.json') });
  });

  it('has no import cycle (npm run check:cycles says the same)', () => {
    expect(graph.circular()).to.deep.equal([]);
  });

  it('imports only downwards: domain and store know no crypto, keys no service, nothing the entry points', () => {
    const upwards: string[] = [];
    for (const [file, imports] of Object.entries(graph.obj())) {
      for (const imported of imports) {
        if (FORBIDDEN[part(file)]?.includes(part(imported))) upwards.push(`${file} -> ${imported}`);
      }
    }
    expect(upwards).to.deep.equal([]);
  });

  it('keeps the dev KMS out of the production code: only the CLI loads it, on demand', () => {
    const importers = Object.entries(graph.obj())
      .filter(([file, imports]) => !file.startsWith('dev-kms/') && imports.some((i) => i.startsWith('dev-kms/')))
      .map(([file]) => file);
    expect(importers).to.deep.equal([]);
  });
});
