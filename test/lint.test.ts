// The tree stays linted and formatted: eslint (eslint.config.js) and prettier (.prettierrc.json, width 140)
// over the whole repository, as `npm run lint` and `npm run format:check` run them. A finding is a failure
// with the tool's own output, so `npm test` (CI) keeps both true.
import t from 'tap';
import { execa } from 'execa';
import { join } from 'node:path';
import { ROOT } from './harness/world.js';

const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

t.test('eslint finds nothing', async (t) => {
  const r = await execa(bin('eslint'), ['.'], { cwd: ROOT, reject: false, all: true, timeout: 300_000 });
  t.equal(r.exitCode, 0, String(r.all).slice(-4000) || 'eslint passed');
});

t.test('prettier: every file is formatted', async (t) => {
  const r = await execa(bin('prettier'), ['--check', '.'], { cwd: ROOT, reject: false, all: true, timeout: 300_000 });
  t.equal(r.exitCode, 0, String(r.all).slice(-4000) || 'prettier passed');
});
