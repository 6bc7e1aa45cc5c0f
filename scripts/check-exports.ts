/**
 * Lists the exports of src/ modules that nothing imports (`npm run lint` runs it; it exits 1 when it
 * finds one). An export nobody imports is dead code or a name that should be module-private.
 *
 * A use is an import (static, `import()`, `require()` or an `import('…').T` type) from any file of
 * tsconfig.json (src/, test/, scripts/), or a `require('../dist/src/…')` in bin/. Re-exporting is
 * not a use. A whole-module import (`import * as m`, `require`) counts every export of the module.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

export interface UnusedExport {
  file: string;
  name: string;
  line: number;
}

export function findUnusedExports(root: string, sourceDir = 'src'): UnusedExport[] {
  const program = programOf(root);
  const checker = program.getTypeChecker();
  const used = new Set<ts.Symbol>();
  const wholeModulesUsed = new Set<string>();
  const original = (symbol: ts.Symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);
  const markModule = (from: ts.SourceFile, specifier: string) => {
    const resolved = ts.resolveModuleName(specifier, from.fileName, program.getCompilerOptions(), ts.sys).resolvedModule;
    if (resolved) wholeModulesUsed.add(resolve(resolved.resolvedFileName));
  };

  for (const file of program.getSourceFiles()) {
    if (file.isDeclarationFile || file.fileName.includes('/node_modules/')) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isImportDeclaration(node) && node.importClause) {
        const { importClause } = node;
        if (importClause.name) markUsed(importClause.name);
        const bindings = importClause.namedBindings;
        if (bindings && ts.isNamespaceImport(bindings)) markModule(file, (node.moduleSpecifier as ts.StringLiteral).text);
        if (bindings && ts.isNamedImports(bindings)) bindings.elements.forEach((element) => markUsed(element.name));
      } else if (ts.isCallExpression(node) && isRequireOrImport(node) && ts.isStringLiteral(node.arguments[0])) {
        markModule(file, node.arguments[0].text);
      } else if (ts.isImportTypeNode(node) && node.qualifier) {
        const symbol = checker.getSymbolAtLocation(node.qualifier);
        if (symbol) used.add(original(symbol));
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }

  function markUsed(name: ts.Identifier): void {
    const symbol = checker.getSymbolAtLocation(name);
    if (symbol) used.add(original(symbol));
  }

  for (const entry of binEntryModules(root)) wholeModulesUsed.add(entry);
  // The package's public entry points (package.json `exports`): what they export is used by the package's users.
  for (const entry of packageEntryModules(root)) {
    const moduleSymbol = program.getSourceFile(entry) && checker.getSymbolAtLocation(program.getSourceFile(entry)!);
    if (!moduleSymbol) continue;
    wholeModulesUsed.add(entry);
    for (const exported of checker.getExportsOfModule(moduleSymbol)) used.add(original(exported));
  }

  const unused: UnusedExport[] = [];
  const sourceRoot = resolve(root, sourceDir);
  for (const file of program.getSourceFiles()) {
    const path = resolve(file.fileName);
    if (!path.startsWith(sourceRoot + '/') || wholeModulesUsed.has(path)) continue;
    const moduleSymbol = checker.getSymbolAtLocation(file);
    if (!moduleSymbol) continue;
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      if (used.has(original(exported))) continue;
      const declaration = exported.declarations?.[0];
      const line = declaration ? file.getLineAndCharacterOfPosition(declaration.getStart()).line + 1 : 0;
      unused.push({ file: relative(root, path), name: exported.name, line });
    }
  }
  return unused.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

function programOf(root: string): ts.Program {
  const configFile = join(root, 'tsconfig.json');
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root, { noEmit: true, incremental: false }, configFile);
  return ts.createProgram(parsed.fileNames, parsed.options);
}

function isRequireOrImport(call: ts.CallExpression): boolean {
  if (call.expression.kind === ts.SyntaxKind.ImportKeyword) return true;
  return ts.isIdentifier(call.expression) && call.expression.text === 'require';
}

/** The src/ modules that bin/*.js load from dist/: their exports are the program's entry points. */
function binEntryModules(root: string): string[] {
  const bin = join(root, 'bin');
  const modules: string[] = [];
  if (!existsSync(bin)) return modules;
  for (const name of readdirSync(bin).filter((n) => n.endsWith('.js'))) {
    for (const match of readFileSync(join(bin, name), 'utf8').matchAll(/require\(['"]\.\.\/dist\/(src\/[^'"]+)\.js['"]\)/g)) {
      modules.push(resolve(root, `${match[1]}.ts`));
    }
  }
  return modules;
}

/** The src/ modules behind package.json `exports` (their compiled `require` or `types` paths under dist/src). */
function packageEntryModules(root: string): string[] {
  const manifest = join(root, 'package.json');
  if (!existsSync(manifest)) return [];
  const exportsField = JSON.parse(readFileSync(manifest, 'utf8')).exports ?? {};
  const paths = Object.values(exportsField).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target as object)));
  return paths
    .map((path) => /^\.\/dist\/(src\/.+?)(\.d)?\.js$|^\.\/dist\/(src\/.+?)\.d\.ts$/.exec(String(path)))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => resolve(root, `${m[1] ?? m[3]}.ts`));
}

if (require.main === module) {
  const root = resolve(__dirname, '..', '..');
  const unused = findUnusedExports(root);
  for (const { file, name, line } of unused) process.stdout.write(`${file}:${line}  ${name} is exported but never imported\n`);
  if (unused.length > 0) {
    process.stdout.write(`\n${unused.length} unused export(s): remove them, or drop the \`export\` if the module uses them itself.\n`);
    process.exit(1);
  }
  process.stdout.write('no unused exports\n');
}
