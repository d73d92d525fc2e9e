// ATTACK20 (a re-attack of fda4e21), finding F1 (low; the operator's side), fixed: the CLI's log readers
// opened every `audit.jsonl[.N]` in the log directory whatever it was: a FIFO blocked `logs` (and
// summary, suggest, status) for good, a directory failed the whole read, a symlink printed another file
// as log lines. Only regular files are read now, never through a link, opened without blocking
// (cli/auditlog.ts logFiles, openRegular).
import { spawnSync } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { logLines } from '../cli/auditlog.js';

const read = async (log: string) => {
  const got: string[] = [];
  for await (const l of logLines(log, { live: true })) got.push(l);
  return got;
};

t.test('a FIFO named audit.jsonl.1 does not block the reader', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a20l-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'audit.jsonl');
  writeFileSync(log, '{"event":"dns","n":1}\n');
  execFileSync('mkfifo', [`${log}.1`]);
  // In a child process: a blocked open would hold one of this process's threadpool threads.
  const mod = resolve('dist/cli/auditlog.js');
  const code = `import(${JSON.stringify(mod)}).then(async (m) => { let n = 0; for await (const _ of m.logLines(${JSON.stringify(log)}, { live: true })) n++; console.log('lines', n); }, (e) => console.log('ERR', e.message))`;
  const r = spawnSync(process.execPath, ['-e', code], { timeout: 5000, encoding: 'utf8' });
  t.comment(`status=${r.status} signal=${r.signal} out=${r.stdout} err=${r.stderr.slice(0, 300)}`);
  t.equal(r.signal, null, 'the reader ended by itself (not killed after 5 s)');
  t.match(r.stdout, /lines 1/, 'the live file was read');
});

t.test('a directory named audit.jsonl.2 is skipped, not an error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a20l-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'audit.jsonl');
  writeFileSync(log, '{"event":"dns","n":2}\n');
  writeFileSync(`${log}.1`, '{"event":"dns","n":1}\n');
  mkdirSync(`${log}.2`);
  const got = await read(log).catch((e: Error) => [`ERR ${e.message}`]);
  t.same(
    got.map((l) => (l.startsWith('ERR') ? l : JSON.parse(l).n)),
    [1, 2],
    JSON.stringify(got),
  );
});

t.test('a symlink named audit.jsonl.1 is not followed to another file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a20l-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'audit.jsonl');
  writeFileSync(log, '{"event":"dns","n":2}\n');
  const other = join(dir, 'elsewhere.txt');
  writeFileSync(other, 'not a log line: secret=hunter2\n');
  symlinkSync(other, `${log}.1`);
  const got = await read(log);
  t.notOk(
    got.some((l) => l.includes('hunter2')),
    `read: ${JSON.stringify(got)}`,
  );
});
