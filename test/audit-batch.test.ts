// The audit log writes its lines in batches (proxy/audit-file.ts BATCHING). A batch must never hide a
// line for long or lose it: a lone line on a quiet gateway reaches the file within the flush interval,
// close() writes every waiting line, and a process.exit() that did not wait for close() still writes them
// (pino's own exit hook flushes the destination).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAudit } from '../proxy/audit.js';
import { AUDIT_BATCH_BYTES, AUDIT_FLUSH_MS } from '../proxy/audit-file.js';
import { ROOT } from './harness/world.js';
import { tempDir } from './harness/world.js';

const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a lone line (far below a batch) is in the file within the flush interval', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'audit.jsonl');
  const audit = createAudit(path);
  t.teardown(() => audit.close());
  await sleep(100); // the file is open
  audit.write({ event: 'stop', signal: 'lone' });
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await sleep(25);
    found = lines(path).some((l) => l.signal === 'lone');
  }
  t.ok(found, `written within ${AUDIT_FLUSH_MS} ms (+ scheduling), without close()`);
});

t.test('close() writes every waiting line, in order', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'audit.jsonl');
  const audit = createAudit(path);
  const n = Math.ceil((3 * AUDIT_BATCH_BYTES) / 60) + 7; // a few batches and a partial one
  for (let i = 0; i < n; i++) audit.write({ event: 'reload', ok: true, rules: i, added: [], removed: [] });
  await audit.close();
  const got = lines(path).map((l) => l.rules);
  t.same(got, Array.from({ length: n }, (_, i) => i), `all ${n} lines, in order`);
});

t.test('process.exit() without close() still writes the waiting lines', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'audit.jsonl');
  const mod = join(ROOT, 'dist', 'proxy', 'audit.js');
  execFileSync(process.execPath, [
    '--input-type=module',
    '-e',
    `import { createAudit } from ${JSON.stringify(mod)};
     const a = createAudit(${JSON.stringify(path)});
     setTimeout(() => { for (let i = 0; i < 3; i++) a.write({ event: 'stop', signal: 'exit-' + i }); process.exit(0); }, 100);`,
  ]);
  t.same(lines(path).map((l) => l.signal), ['exit-0', 'exit-1', 'exit-2'], 'the three lines written just before exit are in the file');
});
