import { expect } from 'chai';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findUnusedExports } from '../../scripts/check-exports';
import { tempDir } from '../helpers/test-vault';

describe('lint / unused exports check (scripts/check-exports.ts)', function () {
  this.timeout(60_000);
  let root: string;
  beforeEach(() => {
    root = tempDir('pii-vault-exports-');
    for (const dir of ['src', 'test', 'bin']) mkdirSync(join(root, dir));
    writeFileSync(join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, types: [] }, include: ['src', 'test'] }));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const write = (path: string, text: string) => writeFileSync(join(root, path), text);

  it('reports exports nothing imports, and counts named, type, namespace, require and bin imports as uses', () => {
    write(
      'src/values.ts',
      'export const used = 1;\nexport const dead = 2;\nexport type UsedType = number;\nexport function alsoDead() {}\n',
    );
    write('src/types.ts', 'export interface ViaImportType { a: number }\nexport interface Unused { b: number }\n');
    write('src/whole.ts', 'export const a = 1;\nexport const b = 2;\n');
    write('src/required.ts', 'export const c = 3;\n');
    write('src/entry.ts', 'export function main() {}\n');
    write('src/barrel.ts', "export { dead } from './values';\n");
    write(
      'test/uses.ts',
      [
        "import { used, type UsedType } from '../src/values';",
        "import * as whole from '../src/whole';",
        "type T = import('../src/types').ViaImportType;",
        "const r = require('../src/required');",
        'export const x: [number, UsedType, unknown, T | undefined, unknown] = [used, 1, whole, undefined, r];',
        '',
      ].join('\n'),
    );
    write('bin/tool.js', "require('../dist/src/entry.js').main();\n");

    const found = findUnusedExports(root).map(({ file, name }) => `${file} ${name}`);
    expect(found).to.deep.equal(['src/barrel.ts dead', 'src/types.ts Unused', 'src/values.ts dead', 'src/values.ts alsoDead']);
  });

  it("counts what a package entry point (package.json exports) exports, re-exports included, as used by the package's users", () => {
    write('src/api.ts', 'export interface Options { a: number }\nexport const hidden = 1;\n');
    write('src/public.ts', "export type { Options } from './api';\nexport function connect() {}\n");
    write(
      'package.json',
      JSON.stringify({ exports: { './public': { types: './dist/src/public.d.ts', require: './dist/src/public.js' } } }),
    );
    const found = findUnusedExports(root).map(({ file, name }) => `${file} ${name}`);
    expect(found).to.deep.equal(['src/api.ts hidden']);
  });
});
