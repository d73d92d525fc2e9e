// Attack review of the appliance's host side: what `up` asks Docker to mount, seen through the real
// CLI with a recording stand-in for `docker` (CODEX_EGRESS_DOCKER), so no engine is needed. The
// sandbox is hostile and has the workdir, its Codex home and a --sessions-path read-write: what it
// left there before this `up` must not change where anything is mounted inside the container.
// The mount semantics themselves (a destination link is followed inside the container) were seen with
// docker 20.10: `docker run -v CH:/home/codex/.codex -v S:/home/codex/.codex/sessions` with
// CH/sessions -> /usr/local/bin put S over /usr/local/bin, and a script named `node` in S ran as uid 0
// under `docker exec -u 0:0 … node` (what `up` runs to fix the sandbox user).
import t from 'tap';
import { mkdirSync, writeFileSync, symlinkSync, chmodSync, readFileSync, lstatSync, existsSync, realpathSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, tempDir } from './harness/world.js';

const FAKE_DOCKER = `#!/usr/bin/env node
const fs = require('fs');
const a = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_DOCKER_LOG, JSON.stringify(a) + '\\n');
if (a[0] === 'exec' && a.includes('codex')) fs.appendFileSync(process.env.FAKE_DOCKER_LOG + '.keys', JSON.stringify({ CODEX_API_KEY: process.env.CODEX_API_KEY ?? null }) + '\\n');
const out = (s) => process.stdout.write(s);
const has = (x) => a.includes(x);
// Another project running (FAKE_OTHER_WORKDIR: its workdir label).
if (a[0] === 'ps' && a.includes('label=dev.codex-egress.workdir') && process.env.FAKE_OTHER_WORKDIR) { out('0123456789ab\\n'); process.exit(0); }
if (a[0] === 'inspect' && has('0123456789ab')) { out('codex-egress-other-000000\\t' + process.env.FAKE_OTHER_WORKDIR + '\\n'); process.exit(0); }
if (a[1] === 'inspect' && a[0] === 'image') { out('sha256:fake\\n'); process.exit(0); }
if (a[1] === 'inspect' && (a[0] === 'container' || a[0] === 'network')) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Status'))) { out('running 0 0\\n'); process.exit(0); }
// A running appliance (FAKE_RUNNING_MOUNTS: the sandbox's mounts as docker inspect gives them).
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Running'))) { if (process.env.FAKE_RUNNING_MOUNTS) { out('true\\n'); process.exit(0); } process.exit(1); }
if (a[0] === 'inspect' && a.some((x) => x.includes('.Mounts'))) { if (process.env.FAKE_RUNNING_MOUNTS) { out(process.env.FAKE_RUNNING_MOUNTS + '\\n'); process.exit(0); } process.exit(1); }
if (a[0] === 'exec' && has('codex')) { out('codex output from the sandbox\\n'); process.exit(0); }
if (a[0] === 'inspect' && a.some((x) => x.includes('.Config.Labels'))) { out('off 4321:4321\\n'); process.exit(0); }
if (a[0] === 'exec' && a.some((x) => x.startsWith('PROBE_CONFIG=')) && process.env.FAKE_PROBE_OUTPUT) { out(process.env.FAKE_PROBE_OUTPUT); process.exit(0); }
if (a[0] === 'exec' && a.some((x) => x.startsWith('PROBE_CONFIG='))) { out(JSON.stringify({ id: 'fake', ok: true, detail: 'fake docker' }) + '\\n'); process.exit(0); }
if ((a[0] === 'ps' && has('-q')) || (a[0] === 'network' && a[1] === 'ls')) process.exit(0);
process.exit(0);
`;

interface Run {
  code: number | undefined;
  stderr: string;
  calls: string[][];
  /** The -v specs of the sandbox's `docker create`. */
  sandboxMounts: string[];
}

const setup = (t: { teardown(fn: () => void): void }) => {
  const tmp = tempDir('codex-egress-attack-mounts-');
  t.teardown(() => tmp.remove());
  const root = realpathSync(tmp.path);
  const fake = join(root, 'docker');
  writeFileSync(fake, FAKE_DOCKER);
  chmodSync(fake, 0o755);
  const log = join(root, 'docker.log');
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(root, 'home'),
    CODEX_EGRESS_STATE_DIR: join(root, 'state'),
    CODEX_EGRESS_DOCKER: fake,
    FAKE_DOCKER_LOG: log,
  };
  mkdirSync(env.HOME);
  const run = async (workdir: string, args: string[], extra: Record<string, string> = {}): Promise<Run> => {
    writeFileSync(log, '');
    const r = await execa(process.execPath, [CLI, 'up', '--detach', '--user', '4321:4321', '--workdir', workdir, ...args], {
      env: { ...env, ...extra },
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
    const sandboxMounts = create.flatMap((x, i) => (x === '-v' ? [create[i + 1]!] : []));
    return { code: r.exitCode, stderr: String(r.stderr), calls, sandboxMounts };
  };
  const execRun = async (workdir: string, args: string[], extra: Record<string, string>) => {
    writeFileSync(log, '');
    const r = await execa(process.execPath, [CLI, 'exec', '--workdir', workdir, ...args], {
      env: { ...env, ...extra },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
      cwd: root,
    });
    return { code: r.exitCode, stderr: String(r.stderr) };
  };
  return { root, env, run, execRun };
};

t.test('ATTACK (sessions mount point): a `sessions` link left in the Codex home does not redirect --sessions-path', async (t) => {
  const { root, run } = setup(t);
  const project = join(root, 'project');
  const sessions = join(root, 'sessions');
  mkdirSync(project);
  mkdirSync(sessions);
  // An earlier run without --sessions-path: the sandbox replaced its sessions directory with a link
  // (a container path: the destination is resolved inside the container).
  const first = await run(project, []);
  t.equal(first.code, 0, 'up exits 0', { stderr: first.stderr.slice(-400) });
  const codexHome = first.sandboxMounts.map((m) => m.split(':')[0]!).find((h) => h.endsWith('/codex-home'))!;
  t.ok(codexHome && existsSync(codexHome), `the Codex home is mounted (${codexHome})`);
  symlinkSync('/usr/local/bin', join(codexHome, 'sessions'));
  const r = await run(project, ['--sessions-path', sessions, '--yes']);
  t.equal(r.code, 0, 'up exits 0', { stderr: r.stderr.slice(-400) });
  t.ok(r.sandboxMounts.includes(`${sessions}:/home/codex/.codex/sessions`), 'the sessions directory is mounted');
  const st = lstatSync(join(codexHome, 'sessions'));
  t.ok(st.isDirectory() && !st.isSymbolicLink(), 'the mount point is a real directory when docker mounts it (the link is gone)');
});

t.test("ATTACK (read-only beside the workdir): --read-only inside a workdir named through a link covers the workdir's copy", async (t) => {
  const { root, run } = setup(t);
  const real = join(root, 'real-projects', 'project');
  mkdirSync(join(real, 'secrets'), { recursive: true });
  writeFileSync(join(real, 'secrets', 'key'), 'x');
  symlinkSync(join(root, 'real-projects'), join(root, 'projects')); // the user's own link (e.g. /home -> /usr/home)
  const workdir = join(root, 'projects', 'project');
  const r = await run(workdir, ['--read-only', join(workdir, 'secrets')]);
  t.equal(r.code, 0, 'up exits 0', { stderr: r.stderr.slice(-400) });
  t.ok(r.sandboxMounts.includes(`${workdir}:${workdir}`), 'the workdir is mounted at the path as given');
  const ro = r.sandboxMounts.find((m) => m.endsWith(':ro') && m.startsWith(join(real, 'secrets')));
  t.equal(
    ro,
    `${join(real, 'secrets')}:${join(workdir, 'secrets')}:ro`,
    "the read-only mount lands over the workdir's secrets, not beside it at its real path",
  );
});

t.test(
  "ATTACK (workdir around the Codex home): a workdir containing /home/codex/.codex or inside the image's binaries is refused",
  async (t) => {
    const { run } = setup(t);
    // Mounted at the same path inside, such a workdir would hold the Codex home's mount point (a link the
    // sandbox plants there redirects the Codex home, read-write, over /usr/local/bin), or replace the
    // image's own executables that `up` runs as root. Only the check matters here: the paths need not exist
    // for the refusal, so they are tried as given when they do.
    for (const w of ['/home/codex', '/home', '/usr/local/bin', '/usr']) {
      if (!existsSync(w)) continue;
      const r = await run(w, []);
      t.equal(r.code, 2, `${w}: refused (usage error)`);
      t.match(r.stderr, /of the sandbox \(it is mounted at the same path\)/, `${w}: says why`);
      t.notOk(
        r.calls.some((c) => c[0] === 'create'),
        `${w}: nothing created`,
      );
    }
  },
);

t.test(
  "ATTACK (exec --output in the running sandbox's sessions): what the running sandbox can write decides, not this command's flags",
  async (t) => {
    const { root, execRun } = setup(t);
    const project = join(root, 'project');
    const sessions = join(root, 'sessions');
    const secret = join(root, 'secret');
    mkdirSync(project);
    mkdirSync(sessions);
    mkdirSync(secret);
    // The appliance runs (up --detach --sessions-path SESSIONS); the sandbox left a link in its sessions.
    symlinkSync(secret, join(sessions, 'out'));
    const mounts = JSON.stringify([
      { Type: 'bind', Source: project, Destination: project, RW: true },
      { Type: 'bind', Source: sessions, Destination: '/home/codex/.codex/sessions', RW: true },
    ]);
    // `exec` is then run without repeating --sessions-path.
    const r = await execRun(project, ['--output', join(sessions, 'out'), 'a prompt'], { FAKE_RUNNING_MOUNTS: mounts });
    t.not(r.code, 0, 'refused', { stderr: r.stderr.slice(-400) });
    t.match(r.stderr, /symbolic link inside|inside .*which the sandbox can change/, 'names the reason');
    t.same(readdirSync(secret), [], 'no run.log or exit.json written through the link');
  },
);

t.test(
  "held (API key, --credentials mount): never in an argument list, a container's configuration or a file; given to docker exec by name",
  async (t) => {
    const { root, env, execRun } = setup(t);
    const project = join(root, 'project');
    mkdirSync(project);
    const SECRET = 'sk-attack-review-SECRET-0123456789';
    const log = env.FAKE_DOCKER_LOG;
    const all: string[] = [];
    const extras: Record<string, string>[] = [{}, { FAKE_RUNNING_MOUNTS: '[]' }];
    for (const extra of extras) {
      writeFileSync(`${log}.keys`, '');
      // the model this test is about: the key given to Codex (the default injects it: the test below)
      const r = await execRun(project, ['--user', '4321:4321', '--credentials', 'mount', 'a prompt'], { ...extra, OPENAI_API_KEY: SECRET });
      t.equal(r.code, 0, 'exec exits 0', { stderr: r.stderr.slice(-400) });
      t.notMatch(r.stderr, SECRET, 'not printed');
      all.push(readFileSync(log, 'utf8'));
      const keys = readFileSync(`${log}.keys`, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { CODEX_API_KEY: string | null });
      t.same(keys, [{ CODEX_API_KEY: SECRET }], 'docker exec of codex has CODEX_API_KEY in its environment');
    }
    t.notOk(all.join('').includes(SECRET), 'in no docker argument list (create, exec, inspect)');
    t.ok(all.join('').includes('"-e","CODEX_API_KEY"'), 'passed by name');
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : e.isFile() ? [join(d, e.name)] : [],
      );
    for (const f of walk(join(root, 'state'))) t.notOk(readFileSync(f, 'utf8').includes(SECRET), `not in ${f.slice(root.length)}`);
  },
);

t.test("held (API key, default: injected): Codex gets the sentinel; the key is only in the gateway's credentials file", async (t) => {
  const { root, env, execRun } = setup(t);
  const project = join(root, 'project');
  mkdirSync(project);
  const SECRET = 'sk-inject-review-SECRET-0123456789';
  const log = env.FAKE_DOCKER_LOG;
  writeFileSync(`${log}.keys`, '');
  const r = await execRun(project, ['--user', '4321:4321', 'a prompt'], { OPENAI_API_KEY: SECRET });
  t.equal(r.code, 0, 'exec exits 0', { stderr: r.stderr.slice(-400) });
  t.notMatch(r.stderr, SECRET, 'not printed');
  t.match(r.stderr, /the OpenAI key \(from OPENAI_API_KEY\) is held by the gateway/);
  const keys = readFileSync(`${log}.keys`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { CODEX_API_KEY: string | null });
  t.same(keys, [{ CODEX_API_KEY: null }], 'docker exec of codex gets no key in its environment');
  const calls = readFileSync(log, 'utf8');
  t.notOk(calls.includes(SECRET), 'in no docker argument list');
  t.ok(calls.includes('"-e","CODEX_API_KEY=codex-egress-managed"'), 'the sandbox is created with the sentinel');
  t.ok(calls.includes('"dev.codex-egress.credentials=inject"'), 'and labelled inject');
  t.ok(/"--credentials","\/etc\/codex\/credentials\/credentials.json"/.test(calls), 'the gateway is given the credentials file');
  t.ok(/"-v","[^"]*\/trust\/ca\.pem:\/opt\/codex-egress\/ca\.pem:ro"/.test(calls), 'the sandbox gets the CA certificate, read-only');
  t.notOk(
    /credentials\/ca[^"]*:\/[^"]*"/.test(
      calls
        .split('\n')
        .filter((l) => l.includes('-sandbox'))
        .join('\n'),
    ),
    'never the CA directory',
  );
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.isFile() ? [join(d, e.name)] : []));
  const holding = walk(join(root, 'state')).filter((f) => readFileSync(f, 'utf8').includes(SECRET));
  t.same(holding, [], 'exec took the appliance down: the key left the disk');
  t.same(readdirSync(project), [], 'nothing in the workdir');
});

t.test('ATTACK (verify output): what a running sandbox prints in place of probe results is a failed probe, not a crash', async (t) => {
  const { root, env } = setup(t);
  const project = join(root, 'project');
  mkdirSync(project);
  for (const bogus of ['{not json\n', '{}\n', '{"ok":true}\n', '{"id":"x","ok":"yes","detail":"d"}\n']) {
    const r = await execa(process.execPath, [CLI, 'verify', '--workdir', project], {
      env: { ...env, FAKE_RUNNING_MOUNTS: '[]', FAKE_PROBE_OUTPUT: `{"id":"gateway-healthy","ok":true,"detail":"fine"}\n${bogus}` },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
    });
    t.equal(r.exitCode, 3, `${JSON.stringify(bogus)}: a probe failed (exit 3)`, { stderr: String(r.stderr).slice(-300) });
    t.match(String(r.stdout), /FAIL\s+probe-output/, 'reported as a failed probe');
  }
});

t.test(
  "ATTACK (two names, one workdir): up refuses while another project's sandbox runs on this workdir, around it or inside it",
  async (t) => {
    // The same directory reached through a link is another project (another name, another state): its
    // running sandbox could swap .git or a --read-only path for a link between this up's checks and
    // Docker's mount (which follows links), e.g. while the gateway becomes healthy.
    const { root, run } = setup(t);
    const real = join(root, 'real', 'project');
    mkdirSync(join(real, '.git', 'sub'), { recursive: true });
    symlinkSync(join(root, 'real'), join(root, 'alias'));
    const cases: Array<[string, string]> = [
      [join(root, 'alias', 'project'), 'the same directory under another name'],
      [join(root, 'real'), 'a directory around it'],
      [join(real, '.git', 'sub'), 'a directory inside it'],
    ];
    for (const [other, what] of cases) {
      const r = await run(real, ['--git-readonly'], { FAKE_OTHER_WORKDIR: other });
      t.equal(r.code, 1, `${what}: refused`);
      t.match(r.stderr, /codex-egress-other-000000 runs on/, `${what}: names the other project`);
      t.notOk(
        r.calls.some((c) => c[0] === 'create'),
        `${what}: nothing created`,
      );
    }
    const ok = await run(real, ['--git-readonly'], { FAKE_OTHER_WORKDIR: join(root, 'elsewhere') });
    t.equal(ok.code, 0, 'an unrelated project running does not matter', { stderr: ok.stderr.slice(-300) });
  },
);
