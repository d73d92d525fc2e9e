// The machine-wide image lock of the Docker e2e files (test/harness/image-lock.ts): one holder at a time,
// a lock left by a dead process taken over, a live holder waited for, and a bounded wait.
import t from 'tap';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { withImageLock } from './harness/image-lock.js';

t.test('one holder at a time, released after an error too', async (t) => {
  const dir = join(t.testdir(), 'lock');
  const events: string[] = [];
  const hold = (name: string, ms: number) =>
    withImageLock(
      async () => {
        events.push(`${name} in`);
        await new Promise((r) => setTimeout(r, ms));
        events.push(`${name} out`);
      },
      10_000,
      dir,
    );
  await Promise.all([hold('a', 300), hold('b', 10), hold('c', 10)]);
  for (let i = 0; i < events.length; i += 2) t.equal(events[i + 1], events[i]!.replace(' in', ' out'), `no overlap at ${i}`);
  await t.rejects(
    withImageLock(() => Promise.reject(new Error('boom')), 1_000, dir),
    /boom/,
  );
  t.notOk(existsSync(dir), 'released after the error');
});

t.test('a lock left by a dead process is taken over; a live holder is waited for, boundedly', async (t) => {
  const dir = join(t.testdir(), 'lock');
  mkdirSync(dir);
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  writeFileSync(join(dir, 'pid'), dead);
  t.equal(await withImageLock(async () => 'taken', 2_000, dir), 'taken');
  mkdirSync(dir);
  writeFileSync(join(dir, 'pid'), String(process.ppid)); // alive
  await t.rejects(
    withImageLock(async () => 'never', 600, dir),
    /waited 600 ms/,
  );
  t.ok(existsSync(dir), "a live holder's lock is left alone");
});
