// ATTACK19 (a re-attack of a4705e9), finding F3 (low), fixed: the gateway rotates with renames one at a
// time, so for a moment a number is missing (.1 after .1→.2, before live→.1); the CLI listed the log's
// files by probing numbers and stopped at the gap, skipping every older file. The files are now listed
// from the directory, and the consistency check compares the whole list (cli/auditlog.ts logFiles).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { logLines } from '../cli/auditlog.js';

t.test('mid-rotation (no .1 yet): the older files are read too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a19r-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'audit.jsonl');
  writeFileSync(`${log}.3`, '{"event":"dns","n":1}\n');
  writeFileSync(`${log}.2`, '{"event":"dns","n":2}\n'); // was .1 a moment ago
  writeFileSync(log, '{"event":"dns","n":3}\n'); // about to become .1
  const got: string[] = [];
  for await (const l of logLines(log, { live: true })) got.push(l);
  t.same(
    got.map((l) => JSON.parse(l).n),
    [1, 2, 3],
    `read: ${JSON.stringify(got)}`,
  );
});
