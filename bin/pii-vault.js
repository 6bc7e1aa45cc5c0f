#!/usr/bin/env node
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
// A fresh checkout (npx pii-vault, npm link) has no compiled code until the first build.
if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) {
  process.stderr.write(`pii-vault: not built yet (no dist/ in ${root}): run \`npm run build\` there first\n`);
  process.exit(1);
}
require('../dist/src/cli/main.js').main(process.argv.slice(2));
