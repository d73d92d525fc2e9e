// ATTACK18 (an attack session on what the operator sees), finding 3 (low), fixed: `codex-egress logs`
// read the rotated history by the names it listed before it started, so a rotation while it read (a
// sandbox can force one every few seconds with allowed DNS queries, never summarised) shifted every name
// by one and a whole file was never read. Here: history .2 (X), .1 (Y), live (A); the gateway rotates as
// X's first line is printed; every line of X, Y and A must be printed once. The files are now all opened
// first, as one consistent set (cli/auditlog.ts logLines). In process and deterministic: the rotation is
// done from inside the stdout write of X's first line.
import t from 'tap';
import { mkdirSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';

const tmp = tempDir('codex-egress-attack18-');
t.teardown(tmp.remove);

const line = (tag: string, n: number) =>
  JSON.stringify({
    level: 'info',
    time: '2026-12-07T09:30:00.000Z',
    v: 1,
    event: 'dns',
    client: '10.9.0.3',
    name: `${tag}${n}.example`,
    qtype: 'A',
    decision: 'allow',
    reason: 'allowed',
    rcode: 'NOERROR',
    answers: [],
  });
const file = (tag: string, n = 3) => `${Array.from({ length: n }, (_, i) => line(tag, i)).join('\n')}\n`;

t.test('a rotation while `logs` reads the history loses no rotated file', async (t) => {
  const project = join(tmp.path, 'project');
  mkdirSync(project, { recursive: true });
  const env = { ...process.env, CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'), NO_COLOR: '1' };
  const paths = statePaths(projectFor(project), env);
  mkdirSync(paths.logDir, { recursive: true });
  const log = paths.auditLog;
  writeFileSync(`${log}.2`, file('x'));
  writeFileSync(`${log}.1`, file('y'));
  writeFileSync(log, file('a'));

  const saved = { state: process.env.CODEX_EGRESS_STATE_DIR, color: process.env.NO_COLOR };
  process.env.CODEX_EGRESS_STATE_DIR = env.CODEX_EGRESS_STATE_DIR;
  process.env.NO_COLOR = '1';
  const printed: string[] = [];
  let rotated = false;
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    const s = String(chunk);
    printed.push(s);
    if (!rotated && s.includes('x0.example')) {
      // The gateway's rotation (proxy/audit-file.ts): shift every rotated file by one, then a new live file.
      rotated = true;
      if (existsSync(`${log}.2`)) renameSync(`${log}.2`, `${log}.3`);
      renameSync(`${log}.1`, `${log}.2`);
      renameSync(log, `${log}.1`);
      writeFileSync(log, file('b'));
    }
    return true;
  }) as typeof process.stdout.write;
  let code: number;
  try {
    const { logsCommand } = await import('../cli/logs.js');
    code = await logsCommand(['--workdir', project]);
  } finally {
    process.stdout.write = write;
    process.env.CODEX_EGRESS_STATE_DIR = saved.state;
    if (saved.color === undefined) delete process.env.NO_COLOR;
    else process.env.NO_COLOR = saved.color;
  }
  t.equal(code, 0);
  t.ok(rotated, 'the rotation happened mid-read');
  const out = printed.join('');
  const count = (tag: string) => (out.match(new RegExp(`${tag}\\d\\.example`, 'g')) ?? []).length;
  t.comment(`printed: x ${count('x')}, y ${count('y')}, a ${count('a')}, b ${count('b')}`);
  for (const tag of ['x', 'y', 'a', 'b']) t.equal(count(tag), 3, `every line of file ${tag} printed once`);
});
