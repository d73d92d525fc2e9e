#!/usr/bin/env node
// The test command (README and CI run exactly this, through `npm test`): runs tap with the TAP
// reporter, passes its output through, and ends with a plain "N passed, N failed" line counting
// every assertion. Exits non-zero when tap fails or when no test ran.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const args = ['tap', '--reporter=tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
let prevIndent = -1;
/** Inside a YAML diagnostic block (`---` … `...` after a result): its lines are not TAP structure. */
let yamlIndent = -1;
const rl = createInterface({ input: child.stdout });
rl.on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const indent = line.length - line.trimStart().length;
  if (yamlIndent >= 0) {
    if (line.trim() === '...' && indent === yamlIndent) yamlIndent = -1;
    return;
  }
  if (line.trim() === '---') {
    yamlIndent = indent;
    return;
  }
  const m = /^(\s*)(not ok|ok) \d+/.exec(line);
  if (m) {
    const indent = m[1].length;
    // A result line right after a deeper block closes a subtest: count only leaves (assertions).
    const closesSubtest = prevIndent > indent;
    if (!closesSubtest) {
      if (/# SKIP|# TODO/i.test(line)) skipped++;
      else if (m[2] === 'ok') passed++;
      else failed++;
    } else if (m[2] === 'not ok' && / # (timeout|fail)/i.test(line)) {
      // a subtest that died (timeout, crash) without a failing assertion of its own
      failed++;
    }
  }
  if (line.trim() !== '') prevIndent = line.length - line.trimStart().length;
});
child.on('close', (code) => {
  const noTests = passed + failed === 0;
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code !== 0 ? code || 1 : noTests ? 1 : failed ? 1 : 0);
});
