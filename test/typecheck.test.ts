// The test files are type-checked too: tsconfig.json builds everything but test/*.test.ts (tap runs them
// through a loader that strips types without checking them), so tsconfig.test.json adds them, without
// emitting, and a type error in a test is a failure with tsc's own output (`npm run typecheck`).
import t from 'tap';
import { execa } from 'execa';
import { join } from 'node:path';
import { ROOT } from './harness/world.js';

t.test('tsc -p tsconfig.test.json finds nothing', async (t) => {
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  const r = await execa(tsc, ['-p', 'tsconfig.test.json'], { cwd: ROOT, reject: false, all: true, timeout: 300_000 });
  t.equal(r.exitCode, 0, String(r.all).slice(-4000) || 'tsc passed');
});
