// ESLint flat config: typescript-eslint's type-aware rules over src/, test/ and scripts/.
// The rules that matter most here catch promises nobody awaits or handles (a rejected one crashes
// the vault or silently drops an audit write) and code nobody uses. Unused exports are checked
// separately by scripts/check-exports.ts (`npm run lint` runs both).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bin/**', 'test/summary-reporter.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Two deliberate requires: package.json's version (outside rootDir for the production build) and
      // the dev KMS, loaded only on demand so that production builds can leave it out.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['/package\\.json$', '/dev-kms/cli$'] }],
      // Tests and adapters read untyped JSON (API answers, driver rows); `any` there is deliberate.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
