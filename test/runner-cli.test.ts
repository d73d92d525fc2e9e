// The runner's options through the real CLI with a recording stand-in for `docker` (CODEX_EGRESS_DOCKER),
// no engine needed: --shm-size, --runtime, --gpus reach `docker create`; an unregistered runtime, a
// Codex binary for another architecture and writable mounts outside the workdir without a yes are
// refused before anything is created; --config and the config search order; doctor's GPU and runtime
// lines. And the pure parts (ELF header, runtimes list).
import t from 'tap';
import {
  mkdirSync,
  writeFileSync,
  chmodSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  lstatSync,
  copyFileSync,
  readdirSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, tempDir } from './harness/world.js';
import { binaryKind, binaryFits } from '../image/binary.js';
import { parseRuntimes, gpuRuntimeStatus, runtimeStatus, checkShmSize, checkRuntimeName } from '../image/engine.js';
import { writableOutside } from '../cli/runner-options.js';
import { labelPaths } from '../image/readonly.js';

const FAKE_DOCKER = `#!/usr/bin/env node
const fs = require('fs');
const a = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_DOCKER_LOG, JSON.stringify(a) + '\\n');
const out = (s) => process.stdout.write(s);
if (a[0] === 'version') { out(a.join(' ').includes('Server') ? '20.10.24 1.41\\n' : '28.2.2\\n'); process.exit(0); }
if (a[0] === 'info') { out((process.env.FAKE_RUNTIMES || '{"runc":{"path":"runc"}}') + ' runc\\n'); process.exit(0); }
if (a[0] === 'image' && a[1] === 'inspect') { out(a.some((x) => x.includes('.Architecture')) ? (process.env.FAKE_PLATFORM || 'linux/amd64') + '\\n' : 'sha256:fake\\n'); process.exit(0); }
if (a[1] === 'inspect' && (a[0] === 'container' || a[0] === 'network')) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Status'))) { out('running 0 0\\n'); process.exit(0); }
if (a[0] === 'inspect' && a.some((x) => x.includes('.State.Running'))) process.exit(1);
if (a[0] === 'inspect' && a.some((x) => x.includes('.Config.Labels'))) { out('off 4321:4321\\n'); process.exit(0); }
if (a[0] === 'exec' && a.some((x) => x.startsWith('PROBE_CONFIG='))) { out(JSON.stringify({ id: 'fake', ok: true, detail: 'fake docker' }) + '\\n'); process.exit(0); }
if (a[0] === 'run') { out('iptables v1.8.9\\nipset v7.17\\n'); process.exit(0); }
// Codex's login in the sandbox: writes auth.json where the Codex home is mounted (FAKE_LOGIN_AUTH).
if (a[0] === 'exec' && a.includes('login')) { if (process.env.FAKE_LOGIN_AUTH) fs.writeFileSync(process.env.FAKE_LOGIN_AUTH, '{"tokens":{}}'); process.exit(Number(process.env.FAKE_LOGIN_EXIT || 0)); }
process.exit(0);
`;

const setup = (t: { teardown(fn: () => void): void }) => {
  const tmp = tempDir('codex-egress-runner-cli-');
  t.teardown(() => tmp.remove());
  const root = realpathSync(tmp.path);
  const fake = join(root, 'docker');
  writeFileSync(fake, FAKE_DOCKER);
  chmodSync(fake, 0o755);
  const log = join(root, 'docker.log');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(root, 'home'),
    CODEX_EGRESS_STATE_DIR: join(root, 'state'),
    CODEX_EGRESS_DOCKER: fake,
    FAKE_DOCKER_LOG: log,
  };
  mkdirSync(env.HOME!);
  const project = join(root, 'project');
  mkdirSync(project);
  const cli = async (args: string[], extra: Record<string, string> = {}) => {
    writeFileSync(log, '');
    const r = await execa(process.execPath, [CLI, ...args], {
      env: { ...env, ...extra },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
      cwd: root,
      stdin: 'ignore',
    });
    const calls = readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string[]);
    const create = calls.find((c) => c[0] === 'create' && c.some((x) => x.endsWith('-sandbox'))) ?? [];
    return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), calls, create };
  };
  const up = (args: string[], extra: Record<string, string> = {}) =>
    cli(['up', '--detach', '--user', '4321:4321', '--workdir', project, ...args], extra);
  return { root, env, project, cli, up };
};

const after = (args: string[], flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);

t.test('--shm-size, --runtime and --gpus reach docker create of the sandbox (and only it)', async (t) => {
  const { up } = setup(t);
  const r = await up(['--shm-size', '2g', '--runtime', 'runsc', '--gpus', 'all'], {
    FAKE_RUNTIMES: '{"runc":{"path":"runc"},"runsc":{"path":"/usr/bin/runsc"}}',
  });
  t.equal(r.code, 0, r.stderr.slice(-400));
  t.equal(after(r.create, '--shm-size'), '2g');
  t.equal(after(r.create, '--runtime'), 'runsc');
  t.equal(after(r.create, '--gpus'), 'all');
  const gw = r.calls.find((c) => c[0] === 'create' && c.some((x) => x.endsWith('-gateway'))) ?? [];
  t.notOk(gw.includes('--runtime'), 'the gateway keeps the default runtime (its firewall needs the kernel netfilter)');
});

t.test('--runtime not registered with the engine: refused before anything is created, naming what to do', async (t) => {
  const { up } = setup(t);
  const r = await up(['--runtime', 'runsc']);
  t.equal(r.code, 1);
  t.match(r.stderr, /runtime runsc is not registered with the engine \(registered: runc\)[^]*daemon\.json/);
  t.notOk(
    r.calls.some((c) => c[0] === 'create' || (c[0] === 'network' && c[1] === 'create')),
    'nothing created',
  );
});

t.test('bad --shm-size / --runtime values are usage errors, never docker options', async (t) => {
  const { up } = setup(t);
  for (const args of [
    ['--shm-size', '2x'],
    ['--shm-size', '--privileged'],
    ['--shm-size', '0'],
    ['--runtime', '--privileged'],
    ['--runtime', '/usr/bin/runc'],
    ['--runtime', ''],
  ]) {
    const r = await up(args);
    t.equal(r.code, 2, `${args.join(' ')}: usage error`);
    t.notOk(
      r.calls.some((c) => c[0] === 'create'),
      'nothing created',
    );
  }
});

t.test('writable mounts outside the workdir: refused without a terminal unless --yes; inside: no question', async (t) => {
  const { root, project, up } = setup(t);
  const sessions = join(root, 'sessions');
  mkdirSync(sessions);
  const no = await up(['--sessions-path', sessions]);
  t.equal(no.code, 2, 'refused');
  t.match(
    no.stderr,
    `the sandbox will be able to change ${sessions} (--sessions-path): outside the workdir. Confirm with --yes`,
    'says what would become writable',
  );
  t.notOk(
    no.calls.some((c) => c[0] === 'create' || (c[0] === 'network' && c[1] === 'create')),
    'nothing created',
  );
  const yes = await up(['--sessions-path', sessions, '--yes']);
  t.equal(yes.code, 0, yes.stderr.slice(-300));
  t.match(yes.stderr, `note: the sandbox will be able to change ${sessions} (--sessions-path): outside the workdir (--yes)`);
  // Through a link of the user's own that points outside: still outside (real paths compared).
  symlinkSync(sessions, join(root, 'link-to-sessions'));
  const viaLink = await up(['--sessions-path', join(root, 'link-to-sessions')]);
  t.equal(viaLink.code, 2, 'a link to outside is outside');
  mkdirSync(join(project, 'sessions-in'));
  const inside = await up(['--sessions-path', join(project, 'sessions-in')]);
  t.equal(inside.code, 0, 'inside the workdir: no confirmation needed');
  t.notMatch(inside.stderr, /outside the workdir/);
  t.same(
    writableOutside('/w', [
      { path: '/w2', what: 'x' },
      { path: '/w/a', what: 'y' },
    ]),
    [{ path: '/w2', what: 'x' }],
    '/w2 is not inside /w',
  );
});

t.test('--codex-bin: a Linux binary of the image architecture mounted read-only over codex; others refused', async (t) => {
  const { root, up, cli } = setup(t);
  const elf = join(root, 'codex-x64');
  copyFileSync(realpathSync('/bin/true'), elf);
  chmodSync(elf, 0o755);
  const ok = await up(['--codex-bin', elf]);
  t.equal(ok.code, 0, ok.stderr.slice(-300));
  t.ok(ok.create.includes(`${elf}:/usr/local/bin/codex:ro`), 'mounted read-only over the image codex');
  t.ok(ok.create.includes('dev.codex-egress.read-only=["/usr/local/bin/codex"]'), 'recorded as meant read-only (what verify proves)');
  const arm = join(root, 'codex-arm64');
  const head = Buffer.from(readFileSync(elf).subarray(0, 64));
  head.writeUInt16LE(0xb7, 18);
  writeFileSync(arm, head);
  chmodSync(arm, 0o755);
  const bad = await up(['--codex-bin', arm]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, 'a Linux arm64 executable, but the image is linux/amd64');
  t.notOk(
    bad.calls.some((c) => c[0] === 'create'),
    'nothing created',
  );
  t.equal((await up(['--codex-bin', elf], { FAKE_PLATFORM: 'linux/arm64' })).code, 2, 'an amd64 binary for an arm64 image: refused');
  const text = join(root, 'codex.txt');
  writeFileSync(text, 'not a program');
  chmodSync(text, 0o755);
  t.match((await up(['--codex-bin', text])).stderr, 'neither an ELF executable nor a script');
  const noexec = join(root, 'codex-noexec');
  copyFileSync(elf, noexec);
  chmodSync(noexec, 0o644);
  t.match((await up(['--codex-bin', noexec])).stderr, 'is not executable');
  const missing = await up(['--codex-bin', join(root, 'missing')]);
  t.match(missing, { code: 1, stderr: /--codex-bin .*missing does not exist/ }, 'a missing file: a clear error (as for every path flag)');
  const d = await cli(['doctor', '--codex-bin', arm, '--json']);
  const checks = JSON.parse(d.stdout).checks as Array<{ id: string; ok: boolean; detail: string }>;
  t.match(
    checks.find((c) => c.id === 'codex-bin'),
    { ok: false, detail: /arm64 executable, but the image is linux\/amd64/ },
    'doctor --codex-bin says the architecture does not fit',
  );
  t.equal(d.code, 1);
  const d2 = await cli(['doctor', '--codex-bin', elf, '--json']);
  t.match(
    JSON.parse(d2.stdout).checks.find((c: { id: string }) => c.id === 'codex-bin'),
    { ok: true, detail: /Linux amd64 executable, as the image/ },
  );
});

t.test('doctor: the GPU runtime line, present or clearly absent; --runtime registered or not', async (t) => {
  const { cli } = setup(t);
  const none = await cli(['doctor']);
  t.match(none.stdout, /note\s+gpu-runtime\s+no GPU runtime registered \(runtimes: runc\): --gpus will fail/, 'absence said clearly');
  t.equal(none.code, 0, 'not a failure');
  const gpu = await cli(['doctor', '--json'], { FAKE_RUNTIMES: '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}' });
  t.match(
    JSON.parse(gpu.stdout).checks.find((c: { id: string }) => c.id === 'gpu-runtime'),
    { ok: true, note: true, detail: /GPU runtime nvidia registered/ },
  );
  const rt = await cli(['doctor', '--runtime', 'runsc']);
  t.equal(rt.code, 1);
  t.match(rt.stdout, /FAIL\s+runtime\s+runtime runsc is not registered/);
  t.equal(
    (await cli(['doctor', '--runtime', 'runsc'], { FAKE_RUNTIMES: '{"runsc":{"path":"/usr/bin/runsc"},"runc":{}}' })).code,
    0,
    'registered: ok',
  );
});

t.test('--config FILE|DIR and the search order (CODEX_CONFIG_DIR, ~/.codex, ~/.config/codex)', async (t) => {
  const { root, env, up } = setup(t);
  const stateOf = (prefix: string) => readdirSync(join(root, 'state')).find((n) => n.startsWith(prefix)) ?? 'none';
  const codexHome = () => join(root, 'state', stateOf('codex-egress-project-'), 'codex-home');
  const write = (dir: string, body: string, prompt?: string) => {
    mkdirSync(join(dir, 'prompts'), { recursive: true });
    writeFileSync(join(dir, 'config.toml'), body);
    if (prompt) writeFileSync(join(dir, 'prompts', 'p.md'), prompt);
  };
  write(join(env.HOME!, '.config', 'codex'), 'model = "xdg"\n');
  t.equal((await up([])).code, 0);
  t.equal(readFileSync(join(codexHome(), 'config.toml'), 'utf8'), 'model = "xdg"\n', '~/.config/codex when it is the only one');
  // Seeded only if missing: a later, higher source does not replace it without --config.
  write(join(env.HOME!, '.codex'), 'model = "dot-codex"\n');
  t.equal((await up([])).code, 0);
  t.equal(readFileSync(join(codexHome(), 'config.toml'), 'utf8'), 'model = "xdg"\n', 'the project keeps its config.toml (seeded once)');
  const cfgDir = join(root, 'team-config');
  write(cfgDir, 'model = "team"\n', 'team prompt');
  const envDir = join(root, 'env-config');
  write(envDir, 'model = "env"\n');
  const r = await up(['--config', cfgDir], { CODEX_CONFIG_DIR: envDir });
  t.equal(r.code, 0, r.stderr.slice(-300));
  t.equal(
    readFileSync(join(codexHome(), 'config.toml'), 'utf8'),
    'model = "team"\n',
    '--config DIR wins over CODEX_CONFIG_DIR and replaces the project config.toml',
  );
  t.equal(readFileSync(join(codexHome(), 'prompts', 'p.md'), 'utf8'), 'team prompt', 'and brings its prompts');
  // The sandbox left a link where config.toml was: replaced, never written through.
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'untouched');
  unlinkSync(join(codexHome(), 'config.toml'));
  symlinkSync(victim, join(codexHome(), 'config.toml'));
  const file = join(root, 'one.toml');
  writeFileSync(file, 'model = "file"\n');
  t.equal((await up(['--config', file])).code, 0);
  t.equal(readFileSync(victim, 'utf8'), 'untouched', 'the link target is not written');
  t.notOk(lstatSync(join(codexHome(), 'config.toml')).isSymbolicLink(), 'config.toml is a file again');
  t.equal(readFileSync(join(codexHome(), 'config.toml'), 'utf8'), 'model = "file"\n', '--config FILE is the config.toml');
  t.match(
    await up(['--config', join(root, 'missing.toml')]),
    { code: 1, stderr: /--config .*missing\.toml does not exist/ },
    'a missing --config: a clear error',
  );
  // Without --config on a fresh project: CODEX_CONFIG_DIR before ~/.codex.
  const other = join(root, 'project2');
  mkdirSync(other);
  const r2 = await execa(process.execPath, [CLI, 'up', '--detach', '--user', '4321:4321', '--workdir', other], {
    env: { ...env, CODEX_CONFIG_DIR: envDir },
    extendEnv: false,
    reject: false,
    cwd: root,
    stdin: 'ignore',
  });
  t.equal(r2.exitCode, 0);
  t.equal(
    readFileSync(join(root, 'state', stateOf('codex-egress-project2-'), 'codex-home', 'config.toml'), 'utf8'),
    'model = "env"\n',
    'CODEX_CONFIG_DIR before ~/.codex',
  );
});

t.test('--codex-home DIR and login: a bot home in the project, Codex login through the sandbox, no personal auth.json', async (t) => {
  const { root, env, project, up, cli } = setup(t);
  // The user's personal login: must never reach a bot's sandbox.
  mkdirSync(join(env.HOME!, '.codex'));
  writeFileSync(join(env.HOME!, '.codex', 'auth.json'), '{"personal":true}');
  const bot = join(project, '.codex-bot');
  t.equal((await cli(['login', '--workdir', project])).code, 2, 'login needs --codex-home');
  const l = await cli(['login', '--workdir', project, '--user', '4321:4321', '--codex-home', bot], {
    FAKE_LOGIN_AUTH: join(bot, 'auth.json'),
  });
  t.equal(l.code, 0, l.stderr.slice(-400));
  t.match(l.stderr, `logged in: auth.json is in ${bot}`);
  t.ok(l.create.includes(`${bot}:/home/codex/.codex`), 'DIR is the Codex home of the sandbox');
  t.notOk(
    l.create.some((x) => x.endsWith(':/home/codex/.codex/auth.json:ro') || x.includes('/.codex/auth.json:')),
    'no auth.json of the user mounted',
  );
  const ex = l.calls.find((c) => c[0] === 'exec' && c.includes('login')) ?? [];
  t.same(ex.slice(ex.indexOf('codex')), ['codex', 'login', '--device-auth'], "Codex's own device-code login, in the sandbox");
  const loginAt = l.calls.indexOf(ex);
  t.ok(
    l.calls
      .slice(loginAt + 1)
      .some((c) => c[0] === 'ps' && c.includes('-a') && c.some((x) => x.startsWith('label=dev.codex-egress.project='))),
    "taken down afterwards (down lists the project's containers)",
  );
  const none = await cli(['login', '--workdir', project, '--user', '4321:4321', '--codex-home', join(project, '.codex-bot2')]);
  t.equal(none.code, 1, 'no auth.json left: exit 1');
  t.match(none.stderr, /left no auth\.json/);
  t.equal(
    (await cli(['login', '--workdir', project, '--user', '4321:4321', '--codex-home', bot], { FAKE_LOGIN_EXIT: '7' })).code,
    7,
    "Codex login's own failure",
  );
  // exec/up with the bot home: mounted, the personal auth.json not looked up; --auth-file still works.
  const u = await up(['--codex-home', bot]);
  t.equal(u.code, 0, u.stderr.slice(-300));
  t.ok(u.create.includes(`${bot}:/home/codex/.codex`));
  t.notOk(
    u.create.some((x) => x.includes('auth.json')),
    "no auth.json mount over the bot's own",
  );
  t.equal(readFileSync(join(bot, 'auth.json'), 'utf8'), '{"tokens":{}}', "the bot's auth.json is kept");
  const withFile = await up(['--codex-home', bot, '--auth-file', join(env.HOME!, '.codex', 'auth.json')]);
  t.ok(
    withFile.create.some((x) => x.endsWith(':/home/codex/.codex/auth.json:ro')),
    '--auth-file explicitly: mounted read-only',
  );
  // Outside the workdir: writable there, so asked for; the workdir itself or around it: refused.
  const outside = join(root, 'bots', 'b1');
  mkdirSync(join(root, 'bots'));
  const o = await up(['--codex-home', outside]);
  t.equal(o.code, 2);
  t.match(o.stderr, `the sandbox will be able to change ${outside} (--codex-home): outside the workdir. Confirm with --yes`);
  t.equal((await up(['--codex-home', outside, '--yes'])).code, 0);
  t.match(await up(['--codex-home', project]), { code: 2, stderr: /is the workdir or contains it/ });
  t.match(await up(['--codex-home', root]), { code: 2, stderr: /is the workdir or contains it/ });
  symlinkSync(outside, join(project, 'bot-link'));
  t.match(
    await up(['--codex-home', join(project, 'bot-link')]),
    { code: 2, stderr: /symbolic link/ },
    'a link inside the workdir is not followed',
  );
});

t.test('pure: ELF headers, runtimes, sizes', async (t) => {
  const elf = readFileSync(realpathSync('/bin/true')).subarray(0, 64);
  t.match(binaryKind(elf), { kind: 'elf', os: 'linux', arch: 'amd64', bits: 64 });
  t.match(binaryKind(Buffer.from('#!/usr/bin/env node\nx')), { kind: 'script', interpreter: '/usr/bin/env node' });
  t.match(binaryKind(Buffer.from('MZ\x90\x00')), { kind: 'unknown' }, 'a Windows executable');
  const mach = Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]);
  t.notOk(binaryFits(binaryKind(mach), 'linux/amd64').ok, 'a macOS binary');
  const bsd = Buffer.from(elf);
  bsd[7] = 9;
  t.match(binaryFits(binaryKind(bsd), 'linux/amd64'), { ok: false, detail: /another operating system/ }, 'a FreeBSD ELF');
  t.notOk(binaryFits(binaryKind(Buffer.alloc(0)), 'linux/amd64').ok, 'an empty file');
  t.same(parseRuntimes('{"runc":{"path":"runc"},"runsc":{}} runc'), { names: ['runc', 'runsc'], default: 'runc' });
  t.equal(parseRuntimes('garbage'), undefined);
  t.equal(parseRuntimes('[1] runc'), undefined);
  t.notOk(runtimeStatus('runsc', undefined).ok, 'unknown runtimes: not ok');
  t.match(gpuRuntimeStatus({ names: ['runc'], default: 'runc' }), { present: false });
  t.match(gpuRuntimeStatus({ names: ['nvidia', 'runc'], default: 'nvidia' }), { present: true, detail: /the default/ });
  t.same(labelPaths('["/a","/b"]'), ['/a', '/b']);
  for (const bad of ['', 'x', '{"a":1}', '[1,"rel",null]']) t.same(labelPaths(bad), [], `label ${JSON.stringify(bad)}: nothing`);
  for (const ok of ['2g', '512m', '64M', '1024']) t.equal(checkShmSize(ok), undefined, ok);
  for (const bad of ['', '2x', '-1', '0', '1e9', '2 g', '--privileged'])
    t.type(checkShmSize(bad), 'string', `refused ${JSON.stringify(bad)}`);
  for (const bad of ['', '-x', '--privileged', 'a/b', 'a b', 'x'.repeat(65)])
    t.type(checkRuntimeName(bad), 'string', `refused ${JSON.stringify(bad)}`);
});
