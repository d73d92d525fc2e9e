// The CLI on a large audit log (about 600 MB, made in a temp directory in a few seconds): `deny` edits the
// allowlist whatever the log's size, and `deny`, `status` and `logs` keep their memory bounded (they stream
// or tail the log; reading it whole into one string failed at this size before the allowlist was edited).
import t from 'tap';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';

const MB = 1024 * 1024;
const LIVE_MB = 600;
const ROTATED_MB = 20;
/** Peak memory of a CLI run: printed at exit by a preload (KiB → MB). */
const RSS_PRELOAD = `data:text/javascript,process.on('exit',()=>process.stderr.write('MAXRSS='+process.resourceUsage().maxRSS+'\\n'))`;
const MAX_RSS_MB = 160;

const dir = tempDir();
t.teardown(dir.remove);
const work = join(dir.path, 'project');
mkdirSync(work);
const env = { CODEX_EGRESS_STATE_DIR: join(dir.path, 'state') };
const paths = statePaths(projectFor(work), env);

/** Fill a file with whole audit lines (one 1 MiB block written again and again); returns the lines written. */
function fill(file: string, mb: number): { deny: number; allow: number } {
  const deny = JSON.stringify({
    level: 'info',
    time: '2026-01-01T00:00:00.000Z',
    v: 1,
    event: 'dns',
    client: '10.0.0.3',
    name: 'flood.example.org',
    qtype: 'A',
    decision: 'deny',
    reason: 'not-allowlisted',
    rcode: 'NXDOMAIN',
    answers: [],
    ms: 0.1,
  });
  const allow = JSON.stringify({
    level: 'info',
    time: '2026-01-01T00:00:00.000Z',
    v: 1,
    event: 'connect',
    client: '10.0.0.3',
    host: 'api.openai.com',
    port: 443,
    ip: '203.0.113.1',
    decision: 'allow',
    reason: 'allowed',
    status: 200,
  });
  let block = '';
  let d = 0;
  let a = 0;
  while (block.length < MB - 400) {
    if (d % 4 === 3) {
      block += `${allow}\n`;
      a++;
    } else block += `${deny}\n`;
    d++;
  }
  const buf = Buffer.from(block);
  const fd = openSync(file, 'w');
  try {
    for (let i = 0; i < mb; i++) writeSync(fd, buf);
  } finally {
    closeSync(fd);
  }
  return { deny: (d - a) * mb, allow: a * mb };
}

async function run(args: string[]) {
  const started = Date.now();
  const r = await execa(process.execPath, ['--import', RSS_PRELOAD, CLI, ...args, '--workdir', work], {
    env,
    reject: false,
    timeout: 180_000,
  });
  const rss = Number(/MAXRSS=(\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
  return { ...r, rss, ms: Date.now() - started };
}

let counts: { deny: number; allow: number };
t.before(() => {
  mkdirSync(paths.logDir, { recursive: true });
  const started = Date.now();
  const rotated = fill(`${paths.auditLog}.1`, ROTATED_MB);
  const live = fill(paths.auditLog, LIVE_MB);
  counts = { deny: rotated.deny + live.deny, allow: rotated.allow + live.allow };
  t.comment(`${LIVE_MB + ROTATED_MB} MB of log written in ${Date.now() - started} ms`);
});

t.test(`deny with a ${LIVE_MB} MB log: the allowlist is edited, memory stays bounded`, async (t) => {
  const r = await run(['deny', 'blocked.example.com']);
  t.comment(`deny: ${r.ms} ms, peak RSS ${r.rss.toFixed(0)} MB`);
  t.equal(r.exitCode, 0, r.stderr);
  t.match(r.stdout, /deny: !blocked\.example\.com/);
  t.match(readFileSync(paths.allowlist, 'utf8'), /^!blocked\.example\.com$/m, 'the rule is in the file');
  t.ok(r.rss < MAX_RSS_MB, `peak RSS ${r.rss.toFixed(0)} MB < ${MAX_RSS_MB} MB`);
  const again = await run(['allow', 'blocked.example.com']);
  t.equal(again.exitCode, 0, again.stderr);
  t.notMatch(readFileSync(paths.allowlist, 'utf8'), /^!blocked\.example\.com$/m, 'allow removes it again');
});

t.test('status counts every decision of the whole log (rotated file included), streaming', async (t) => {
  const r = await run(['status', '--json']);
  t.comment(`status: ${r.ms} ms, peak RSS ${r.rss.toFixed(0)} MB`);
  t.equal(r.exitCode, 4, 'not running');
  t.same(JSON.parse(r.stdout).decisions, { dns: { deny: counts.deny }, connect: { allow: counts.allow } });
  t.ok(r.rss < MAX_RSS_MB, `peak RSS ${r.rss.toFixed(0)} MB < ${MAX_RSS_MB} MB`);
});

t.test('logs streams the whole log with bounded memory', async (t) => {
  const r = await run(['logs', '--since', '2026-01-01T00:00:01Z']);
  t.comment(`logs --since: ${r.ms} ms, peak RSS ${r.rss.toFixed(0)} MB`);
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout, '', 'every line is older');
  t.ok(r.rss < MAX_RSS_MB, `peak RSS ${r.rss.toFixed(0)} MB < ${MAX_RSS_MB} MB`);
});
