// ESLint (flat config): the recommended JavaScript and typescript-eslint rules, nothing about layout
// (that is prettier's: `npm run format:check`, .prettierrc.json). `npm run lint`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // Matching control bytes is the point of many checks here (names, headers, log lines).
      'no-control-regex': 'off',
      // `_`-prefixed names are deliberately unused (a parameter kept for its position).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['test/**'],
    // tests match aligned human output (tables, status lines) with the spaces as printed
    rules: { 'no-regex-spaces': 'off' },
  },
);
