// ATTACK18 (an attack session on what the operator sees), finding 4 (low: a crafted log the gateway never
// writes; the log's directory is outside the workdir), fixed: a line with a field nested 20,000 deep made
// `codex-egress logs` exhaust the stack and exit 1 (cli/printable.ts now stops at a depth of 32); and a
// `repeat` line with `"of":"__proto__"` wrote its count onto Object.prototype (counts have no prototype now).
import t from 'tap';
import { execa } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';

const tmp = tempDir('codex-egress-attack18-');
t.teardown(tmp.remove);

t.test('one deeply nested line does not take `logs` down', async (t) => {
  const project = join(tmp.path, 'project');
  mkdirSync(project, { recursive: true });
  const env = { CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'), CODEX_EGRESS_DOCKER: join(tmp.path, 'no-docker'), NO_COLOR: '1' };
  const paths = statePaths(projectFor(project), env);
  mkdirSync(paths.logDir, { recursive: true });
  const ok = (name: string) =>
    JSON.stringify({
      level: 'info',
      time: '2026-12-07T09:30:00.000Z',
      v: 1,
      event: 'dns',
      client: '10.9.0.3',
      name,
      qtype: 'A',
      decision: 'deny',
      reason: 'not-allowlisted',
      rcode: 'NXDOMAIN',
      answers: [],
    });
  const deep = `{"level":"info","time":"2026-12-07T09:30:01.000Z","v":1,"event":"dns","name":"x","x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
  writeFileSync(paths.auditLog, `${ok('before.example')}\n${deep}\n${ok('after.example')}\n`);
  const r = await execa(process.execPath, [CLI, 'logs'], { reject: false, cwd: project, timeout: 60_000, env });
  t.comment(`exit ${r.exitCode}; stderr: ${r.stderr.slice(0, 200)}`);
  t.equal(r.exitCode, 0, 'logs exits 0');
  t.match(r.stdout, /after\.example/, 'the line after the damaged one is printed');
});

// Same class (crafted log, not written by the gateway): countLine (cli/auditlog.ts) counts into a plain
// object keyed by the line's `of`/`event` and `decision`: `"of":"__proto__"` makes `counts.__proto__ ??= {}`
// return Object.prototype, and the count is then written onto Object.prototype (`status` pollutes every
// object of the CLI process with the line's `decision` as a property name).
t.test('a crafted repeat line does not write onto Object.prototype', async (t) => {
  const { countDecisions } = await import('../cli/auditlog.js');
  const key = 'attack18Polluted';
  try {
    countDecisions([`{"event":"repeat","of":"__proto__","decision":"${key}","count":7}`]);
    t.equal(({} as Record<string, unknown>)[key], undefined, 'Object.prototype untouched');
  } finally {
    delete (Object.prototype as Record<string, unknown>)[key];
  }
});
