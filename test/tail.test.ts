// `logs -f` across a rotation (cli/auditlog.ts Tail): a line that reaches the live file after the
// follower read it and before the gateway renamed it to audit.jsonl.1 is still printed, once. No I/O
// beyond a temporary directory.
import t from 'tap';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tail } from '../cli/auditlog.js';
import { tempDir } from './harness/world.js';

const all = async (tail: Tail) => {
  const out: string[] = [];
  for await (const l of tail.poll()) out.push(l);
  return out;
};

t.test('a line written to the old file just before its rotation is not lost', async (t) => {
  const tmp = tempDir('codex-egress-tail-');
  t.teardown(() => tmp.remove());
  const log = join(tmp.path, 'audit.jsonl');
  writeFileSync(log, '{"n":1}\n');
  const tail = await Tail.atStart(log);
  t.teardown(() => tail.close());
  t.same(await all(tail), ['{"n":1}']);
  // the gateway writes one more line to the live file, then rotates (rename, new live file)
  appendFileSync(log, '{"n":2}\n');
  renameSync(log, `${log}.1`);
  writeFileSync(log, '{"n":3}\n');
  t.same(await all(tail), ['{"n":2}', '{"n":3}'], 'the last line of the rotated file, then the new file');
  appendFileSync(log, '{"n":4}\n');
  t.same(await all(tail), ['{"n":4}'], 'and it follows the new file');
  // two rotations between polls: the held file's rest, the one rotated after it, then the live one
  appendFileSync(log, '{"n":5}\n');
  renameSync(`${log}.1`, `${log}.2`);
  renameSync(log, `${log}.1`);
  writeFileSync(log, '{"n":6}\n');
  renameSync(`${log}.2`, `${log}.3`);
  renameSync(`${log}.1`, `${log}.2`);
  renameSync(log, `${log}.1`);
  writeFileSync(log, '{"n":7}\n');
  t.same(await all(tail), ['{"n":5}', '{"n":6}', '{"n":7}'], 'two rotations at once: nothing lost, nothing twice');
});

t.test('a line that lands between the final read and the rotation check is printed (the race of logs -f)', async (t) => {
  const tmp = tempDir('codex-egress-tail-race-');
  t.teardown(() => tmp.remove());
  const log = join(tmp.path, 'audit.jsonl');
  writeFileSync(log, '{"n":1}\n');
  // The gateway writes and rotates exactly in the window between the follower's read to the end of the
  // file it holds and its check of the live path: the first stat of the live path does it.
  const real = await import('node:fs/promises');
  let armed = false;
  const { Tail: RacyTail } = await t.mockImport<typeof import('../cli/auditlog.js')>('../cli/auditlog.js', {
    'node:fs/promises': {
      ...real,
      stat: async (p: string) => {
        if (armed && p === log) {
          armed = false;
          appendFileSync(log, '{"n":2}\n');
          renameSync(log, `${log}.1`);
          writeFileSync(log, '{"n":3}\n');
        }
        return real.stat(p);
      },
    },
  });
  const tail = await RacyTail.atStart(log);
  t.teardown(() => tail.close());
  t.same(await all(tail), ['{"n":1}']);
  armed = true;
  t.same(await all(tail), ['{"n":2}', '{"n":3}'], 'the line written just before the rename, then the new file');
});
