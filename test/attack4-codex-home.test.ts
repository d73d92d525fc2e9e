// ATTACK4 (security review of credential injection, host side): `up` refuses a mount that would show the
// gateway's credentials directory to the sandbox, but it checked only the extra mounts (--read-only,
// --init-script, ...), not the read-write ones: a --codex-home (or --sessions-path) that is the
// project's state directory, or contains it, was mounted read-write into the sandbox, which could then
// read credentials/credentials.json (the real API key) and ca/ca-key.pem, and edit its own allowlist.
// Through the real CLI with a recording stand-in for `docker` (CODEX_EGRESS_DOCKER): no engine needed.
import t from 'tap';
import { chmodSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';

const FAKE_DOCKER = `#!/usr/bin/env node
const fs = require('fs');
const a = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_DOCKER_LOG, JSON.stringify(a) + '\\n');
const out = (s) => process.stdout.write(s);
if (a[1] === 'inspect' && a[0] === 'image') { out('sha256:fake\\n'); process.exit(0); }
if (a[1] === 'inspect' && (a[0] === 'container' || a[0] === 'network')) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Status'))) { out('running 0 0\\n'); process.exit(0); }
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Running'))) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.Mounts'))) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.Config.Labels'))) { out('off 4321:4321\\n'); process.exit(0); }
if (a[0] === 'exec' && a.some((x) => x.startsWith('PROBE_CONFIG='))) { out(JSON.stringify({ id: 'fake', ok: true, detail: 'fake docker' }) + '\\n'); process.exit(0); }
process.exit(0);
`;

const tmp = tempDir('codex-egress-attack4-home-');
t.teardown(() => tmp.remove());
const root = realpathSync(tmp.path);
const fake = join(root, 'docker');
writeFileSync(fake, FAKE_DOCKER);
chmodSync(fake, 0o755);
const log = join(root, 'docker.log');
const state = join(root, 'state');
mkdirSync(join(root, 'home'));

async function up(workdir: string, args: string[], stateDir = state) {
  writeFileSync(log, '');
  const r = await execa(process.execPath, [CLI, 'up', '--detach', '--user', '4321:4321', '--workdir', workdir, ...args], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      CODEX_EGRESS_STATE_DIR: stateDir,
      CODEX_EGRESS_DOCKER: fake,
      FAKE_DOCKER_LOG: log,
      CODEX_API_KEY: 'sk-real-attack4-home',
    },
    extendEnv: false,
    reject: false,
    timeout: 60_000,
    cwd: root,
  });
  const calls = readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as string[]);
  const create = calls.find((c) => c[0] === 'create' && c.some((x) => x.endsWith('-sandbox'))) ?? [];
  return { code: r.exitCode, stderr: String(r.stderr), mounts: create.flatMap((x, i) => (x === '-v' ? [create[i + 1]!] : [])) };
}

t.test("ATTACK4 codex-home: a read-write mount holding the gateway's credentials is refused", async (t) => {
  const work = join(root, 'work');
  mkdirSync(work);
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  for (const [flag, dir] of [
    ['--codex-home', paths.dir],
    ['--codex-home', state],
    ['--sessions-path', paths.dir],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    const r = await up(work, [flag, dir, '--yes']);
    const shown = r.mounts.filter((m) => {
      const host = m.split(':')[0]!;
      return !m.endsWith(':ro') && (paths.dir === host || paths.dir.startsWith(`${host}/`));
    });
    t.same(shown, [], `${flag} ${dir}: the state directory (credentials/, ca/ca-key.pem, the allowlist) is not mounted into the sandbox`);
    t.not(r.code, 0, `${flag} ${dir}: refused (${r.stderr.trim().split('\n').at(-1)})`);
  }
});

t.test('ATTACK4 codex-home: no read-write mount inside the state directory either (audit log, runs)', async (t) => {
  const work = join(root, 'work2');
  mkdirSync(work);
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  for (const [flag, dir] of [
    ['--codex-home', paths.logDir],
    ['--sessions-path', join(paths.dir, 'runs')],
    ['--codex-home', join(paths.dir, 'trust')],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    const r = await up(work, [flag, dir, '--yes']);
    const shown = r.mounts.filter((m) => {
      const host = m.split(':')[0]!;
      return !m.endsWith(':ro') && host !== paths.codexHome && (host === paths.dir || host.startsWith(`${paths.dir}/`));
    });
    t.same(shown, [], `${flag} ${dir}: not mounted read-write into the sandbox (it could rewrite the audit log or the host's run records)`);
    t.equal(r.code, 2, `${flag} ${dir}: a usage error (${r.stderr.trim().split('\n').at(-1)})`);
  }
  // the default Codex home (in the state directory) and one outside it still work
  t.equal((await up(work, [])).code, 0);
  const own = join(root, 'bot-home');
  mkdirSync(own);
  t.equal((await up(work, ['--codex-home', own, '--yes'])).code, 0);
});

t.test('the state directory reached through a link: its real path is refused too', async (t) => {
  const work = join(root, 'work3');
  mkdirSync(work);
  mkdirSync(state, { recursive: true });
  const link = join(root, 'state-link');
  symlinkSync(state, link);
  // the CLI knows the state directory by the link; the user names the real directory
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  mkdirSync(paths.logDir, { recursive: true });
  for (const [flag, dir] of [
    ['--codex-home', paths.dir],
    ['--sessions-path', paths.logDir],
    ['--codex-home', state],
  ] as const) {
    const r = await up(work, [flag, dir, '--yes'], link);
    t.equal(r.code, 2, `${flag} ${dir} (state dir known as ${link}): a usage error (${r.stderr.trim().split('\n').at(-1)})`);
    t.same(
      r.mounts.filter((m) => m.startsWith(`${dir}:`) && !m.endsWith(':ro')),
      [],
      `${flag} ${dir}: not mounted read-write`,
    );
  }
});
