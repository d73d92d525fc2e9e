// ATTACK17 (a re-attack of the ATTACK16 fix), finding F1 (medium), fixed: a FIFO put at the allowlist's
// path, even for a moment, blocked the watcher's read for good (open() of a FIFO waits for a writer): its
// one-at-a-time checks never moved again, every later edit (a deny included) was ignored, and a FIFO
// there at start hung the gateway. readOnce (proxy/watch-file.ts) now opens without blocking and reads
// only a regular file of bounded size; anything else is an error and the rules in force stay.
import { constants, closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startFileGateway } from './harness/file-gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a FIFO at the allowlist path for a moment: later edits of the file still apply', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a17-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'allowed_domains.txt');
  const parked = join(dir, 'parked.fifo');
  writeFileSync(file, 'a.test\n');
  const g = await startFileGateway(file);
  let unblocked = false;
  const unblock = () => {
    if (unblocked) return;
    unblocked = true;
    // A writer opens and closes the parked FIFO: a read blocked in its open() ends (empty).
    try {
      closeSync(openSync(parked, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      /* no reader blocked */
    }
  };
  t.teardown(async () => {
    unblock();
    await g.stop();
  });
  const rules = () => g.allowlist().rules.map((r) => r.text);
  t.same(rules(), ['a.test']);

  rmSync(file);
  execFileSync('mkfifo', [file]);
  await sleep(1500); // the watcher (event, then poll) tries to read it
  renameSync(file, parked);
  writeFileSync(file, 'c.test\n!bad.c.test\n');
  // Left alone for three polls.
  for (let i = 0; i < 30 && rules().join() !== 'c.test,!bad.c.test'; i++) await sleep(100);
  t.same(rules(), ['c.test', '!bad.c.test'], 'the file as it is now is in force');
});
