// End to end with a real Docker engine (test/harness/docker-setup.sh prepares it): images built from the
// project's Dockerfiles on the local base image, `up --detach` in a temp project behind a fake internet on
// an --internal network, verify, allow/deny live, exec, logs, status, fail-closed, `down` leaving nothing.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import {
  existsSync,
  readFileSync,
  mkdirSync,
  writeFileSync,
  chownSync,
  symlinkSync,
  rmSync,
  readdirSync,
  statSync,
  lstatSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import {
  auditWritten,
  NODE_LTS_MAJOR,
  withDockerEngine,
  baseImageReady,
  runCli,
  e2eRun,
  docker,
  packFakeCodex,
  startDockerWorld,
  nodeLtsBase,
  type DockerWorld,
  withImageLock,
} from './harness/docker.js';
import { projectFor } from '../image/names.js';
import { PROJECT_LABEL } from '../image/names.js';

const e2e = e2eRun();
const { id, images } = e2e;
const ALLOWED = 'allowed.example.org';
const LATER = 'later.example.org';
const NEVER = 'never.example.org';
const NODE_HOST = 'node.example.org';
/** The project's owner: not root, not the image's build-time uid (1000), so the mapping is visible. */
const OWNER = 2345;
/** Kill the gateway's node process from inside its container (docker-init is PID 1, node its child). */
const KILL_NODE =
  'for d in /proc/[0-9]*; do c=$(tr "\\0" " " < $d/cmdline 2>/dev/null); case "$c" in node*gateway*) kill -9 ${d#/proc/};; esac; done';

t.test('docker end to end', async (t) => {
  await withDockerEngine(t, 'the Docker end-to-end test', (engine) => run(t, engine));
});

async function run(t: Test, engine: string) {
  const tmp = tempDir('codex-egress-e2e-');
  const project = join(tmp.path, 'my-project');
  mkdirSync(project);
  chownSync(project, OWNER, OWNER);
  mkdirSync(join(tmp.path, 'home'));
  // What a planted link would reach: nothing here may change, whatever the sandbox plants.
  const secret = join(tmp.path, 'secret');
  mkdirSync(secret);
  writeFileSync(join(secret, 'id_rsa'), 'PRIVATE\n');
  const p = projectFor(project);
  const stateDir = join(tmp.path, 'state', p.name);
  const codexHome = join(stateDir, 'codex-home');
  const apiKey = `sk-e2e-${id}`;
  const env = e2e.env(tmp.path);
  const cli = (args: string[], timeout = 180_000, extraEnv: NodeJS.ProcessEnv = {}) =>
    runCli(project, { ...env, ...extraEnv }, args, timeout);
  /** curl from inside the sandbox, through the proxy variables only. */
  const sandboxCurl = (url: string) => docker(['exec', p.sandbox, 'curl', '-sS', '-k', '-m', '8', url], 30_000);

  t.teardown(() => e2e.remove([p], tmp));

  t.ok(engine, `engine ${engine}`);
  if (!(await baseImageReady(t))) return;

  let world!: DockerWorld;
  const upArgs = () => ['--no-defaults', '--allow', ALLOWED, '--upstream', world.ip, '--egress-network', world.network];

  await t.test('build: both images from the Dockerfiles on the local base (Node LTS), no registry', async (t) => {
    const codex = await packFakeCodex(tmp.path);
    const base = await nodeLtsBase();
    // PACKAGES without procps or bubblewrap: what Codex needs is installed anyway.
    const r = await withImageLock(() =>
      cli(['build', '--base', base, '--codex-tarballs', codex, '--build-arg', 'PACKAGES=ca-certificates git curl', '--quiet'], 900_000),
    );
    t.equal(r.code, 0, `build exit 0 ${r.stderr.slice(-600)}`);
    const v = await docker([
      'run',
      '--rm',
      '--network',
      'none',
      images.codex,
      'sh',
      '-c',
      'id -u; codex --version; node --version; ps -p 1 -o pid= && bwrap --version',
    ]);
    t.match(v.stdout, /^1000\n[^]*codex-cli 0\.0\.0-test/, 'sandbox image: non-root user, Codex installed from the packed tarball');
    t.match(v.stdout, new RegExp(`\\nv${NODE_LTS_MAJOR}\\.`), `Node ${NODE_LTS_MAJOR} in the sandbox image`);
    t.match(v.stdout, /\n\s*1\n[^]*bubblewrap/, 'ps and bubblewrap installed although PACKAGES left them out');
    world = await startDockerWorld(tmp.path, id, [ALLOWED, LATER, NEVER, NODE_HOST]);
  });

  // assigned in the build subtest; without the fake internet nothing else can run
  if (!world) return;

  await t.test('doctor: engine, images, iptables and ipset in the gateway', async (t) => {
    const r = await cli(['doctor', '--json']);
    const d = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ id: string; ok: boolean; detail: string }> };
    t.equal(r.code, 0, JSON.stringify(d.checks.filter((c) => !c.ok)));
    t.same(
      d.checks.map((c) => c.id),
      ['docker-client', 'docker-engine', 'image-gateway', 'image-codex', 'gateway-firewall-tools', 'gpu-runtime'],
    );
    const missing = await cli(['doctor', '--image', `codex-egress-e2e-missing:${id}`]);
    t.equal(missing.code, 1, 'a missing image fails');
    t.match(missing.stdout, /FAIL\s+image-codex[^]*codex-egress build/, 'with advice');
  });

  await t.test('up refuses to start Codex when a probe fails, and leaves nothing behind', async (t) => {
    const r = await cli(['up', '--detach', ...upArgs(), '--verify-host', NEVER]);
    t.equal(r.code, 3, 'exit 3: a probe failed');
    t.match(r.stdout, /FAIL\s+allowed-host/);
    t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no container left');
    t.equal((await docker(['network', 'ls', '-q', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no network left');
  });

  await t.test('links planted in the workdir: every bind source that passes through one is refused, nothing made', async (t) => {
    const none = async () => (await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout === '';
    mkdirSync(join(tmp.path, 'state'), { recursive: true });
    symlinkSync(secret, join(project, 'ro-link'));
    symlinkSync(secret, join(project, 'parent-link'));
    symlinkSync(join(tmp.path, 'gone'), join(project, 'dangling'));
    symlinkSync(join(tmp.path, 'state'), join(project, 'state-link'));
    symlinkSync(join(secret, 'id_rsa'), join(project, 'script-link'));
    const cases: Array<[string, string[], string, (() => void)?]> = [
      ['.git -> a host directory, --git-readonly', ['--git-readonly'], `${project}/.git`, () => symlinkSync(secret, join(project, '.git'))],
      [
        '.git -> ../secret (relative), --git-readonly',
        ['--git-readonly'],
        `${project}/.git`,
        () => (rmSync(join(project, '.git')), symlinkSync('../secret', join(project, '.git'))),
      ],
      ['--read-only of a link', ['--read-only', join(project, 'ro-link')], `${project}/ro-link`],
      ['--read-only below a linked parent', ['--read-only', join(project, 'parent-link', 'id_rsa')], `${project}/parent-link`],
      ['--read-only of a dangling link', ['--read-only', join(project, 'dangling')], `${project}/dangling`],
      ['--read-only of a relative path through link/..', ['--read-only', 'parent-link/..'], `${project}/parent-link`],
      ['--read-only of a link to the state directory', ['--read-only', join(project, 'state-link')], `${project}/state-link`],
      ['--init-script through a link', ['--init-script', join(project, 'script-link')], `${project}/script-link`],
    ];
    for (const [what, flags, named, plant] of cases) {
      plant?.();
      const r = await cli(['up', '--detach', ...upArgs(), ...flags]);
      t.equal(r.code, 1, `${what}: refused (exit 1)`);
      t.match(r.stderr, `${named} is a symbolic link inside ${project}`, `${what}: the error names the link`);
      t.ok(await none(), `${what}: no container made`);
    }
    rmSync(join(project, '.git'));
    for (const l of ['ro-link', 'parent-link', 'dangling', 'state-link', 'script-link']) rmSync(join(project, l));
    // Where the Codex home and the runs used to be: links there lead nowhere now (the host never looks).
    mkdirSync(join(project, '.codex-egress'));
    symlinkSync(stateDir, join(project, '.codex-egress', 'codex-home'));
    symlinkSync(secret, join(project, '.codex-egress', 'runs'));
  });

  await t.test('up --detach: hardened topology, every verify probe green', async (t) => {
    const started = Date.now();
    mkdirSync(join(project, '.git'));
    mkdirSync(join(tmp.path, 'reference'));
    writeFileSync(join(tmp.path, 'init.sh'), 'echo "init ran as $(id -u)" > /tmp/init-ran\n');
    // --credentials mount: exec below checks the model where Codex is given the key (the default injects it: codex-real.test.ts)
    const r = await cli([
      'up',
      '--detach',
      '--json',
      ...upArgs(),
      '--credentials',
      'mount',
      '--git-readonly',
      '--read-only',
      join(tmp.path, 'reference'),
      '--init-script',
      join(tmp.path, 'init.sh'),
    ]);
    t.equal(r.code, 0, `up exit 0 ${r.stderr.slice(-800)}`);
    const verdict = JSON.parse(r.stdout) as { ok: boolean; probes: Array<{ id: string; ok: boolean; detail: string }> };
    t.ok(verdict.ok, 'all probes pass');
    t.match(
      verdict,
      { codexSandbox: 'off', sandboxUser: `${OWNER}:${OWNER}` },
      "verify says Codex's own sandbox is off, and who the sandbox is",
    );
    t.same(
      verdict.probes.map((x) => x.id).filter((id) => id !== 'read-only'),
      [
        'gateway-healthy',
        'allowed-host',
        'denied-host',
        'ip-literal',
        'direct-dns',
        'ipv6',
        'lan',
        'metadata',
        'transparent',
        'host-bridge',
      ],
    );
    // one read-only probe per read-only mount: --git-readonly, --read-only reference, the init script
    const readOnly = verdict.probes.filter((x) => x.id === 'read-only');
    t.ok(readOnly.length >= 3, `a read-only probe per read-only mount (${readOnly.map((x) => x.detail).join('; ')})`);
    t.ok(
      readOnly.some((x) => x.detail.includes(join(tmp.path, 'reference'))),
      'the --read-only path is proved read-only from inside',
    );
    for (const probe of verdict.probes) t.ok(probe.ok, `${probe.id}: ${probe.detail}`);
    t.comment(`up + verify took ${Date.now() - started} ms`);

    const net = JSON.parse((await docker(['network', 'inspect', p.internalNetwork])).stdout)[0];
    t.equal(net.Internal, true, 'internal network');
    t.equal(net.Options['com.docker.network.bridge.inhibit_ipv4'], 'true', 'no host address on the bridge');
    t.equal(net.IPAM.Config[0].Subnet, p.subnet, 'fixed subnet');
    const sb = JSON.parse((await docker(['inspect', p.sandbox])).stdout)[0];
    t.same(Object.keys(sb.NetworkSettings.Networks), [p.internalNetwork], 'sandbox: internal network only');
    t.same(sb.HostConfig.CapDrop, ['ALL'], 'sandbox: no capabilities');
    t.same(sb.HostConfig.CapAdd ?? [], []);
    t.same(sb.HostConfig.SecurityOpt, ['no-new-privileges']);
    t.same(sb.HostConfig.Dns, [p.gatewayIp], 'sandbox DNS = the gateway');
    t.equal(sb.Config.User, `${OWNER}:${OWNER}`, "non-root: the workdir's owner");
    t.ok(
      sb.Config.Env.includes(`HTTPS_PROXY=http://${p.gatewayIp}:3128`) && sb.Config.Env.includes(`https_proxy=http://${p.gatewayIp}:3128`),
    );
    const gw = JSON.parse((await docker(['inspect', p.gateway])).stdout)[0];
    t.same(Object.keys(gw.NetworkSettings.Networks).sort(), [p.internalNetwork, world.network].sort(), 'gateway: internal + egress');
    t.equal(gw.NetworkSettings.Networks[p.internalNetwork].IPAddress, p.gatewayIp, 'gateway at its static address');
    t.equal(gw.State.Health?.Status === undefined ? 'none' : 'has-healthcheck', 'has-healthcheck');
    const id = await docker([
      'exec',
      p.sandbox,
      'sh',
      '-c',
      'id -u; id -g; whoami; touch "$HOME/.home-writable" && echo home-ok; ps -o comm= -p 1',
    ]);
    t.same(
      id.stdout.trim().split('\n'),
      [String(OWNER), String(OWNER), 'codex', 'home-ok', 'docker-init'],
      "the owner's uid/gid, known as codex, a writable home, ps works",
    );
    const bwrap = await docker(['exec', p.sandbox, 'bwrap', '--ro-bind', '/', '/', '--unshare-user', '--unshare-net', 'true']);
    t.not(bwrap.code, 0, "default mode: bubblewrap cannot build Codex's sandbox (Codex is told not to try)");
    const mounts = sb.Mounts as Array<{ Source: string; Destination: string; RW: boolean }>;
    const mount = (dest: string) => mounts.find((m) => m.Destination === dest);
    t.equal(mount(project)?.RW, true, 'workdir at the same path, read-write');
    t.equal(mount(join(project, '.git'))?.RW, false, '--git-readonly');
    t.equal(mount(join(tmp.path, 'reference'))?.RW, false, '--read-only PATH');
    t.notOk(
      mounts.some((m) => m.Source.startsWith(join(tmp.path, 'state')) && m.Source !== codexHome),
      'the gateway state (allowlist, audit log) is not in the sandbox',
    );
    t.equal(mount('/home/codex/.codex')?.Source, codexHome, 'the Codex home comes from the state directory, not through the planted link');
    t.equal(mount('/home/codex/.codex')?.RW, true);
    t.equal(statSync(codexHome).uid, OWNER, 'the Codex home belongs to the sandbox user');
    t.ok(lstatSync(join(project, '.codex-egress', 'codex-home')).isSymbolicLink(), 'the planted link was left alone');
    t.same(readdirSync(secret), ['id_rsa'], 'nothing written where the links point');
    t.match(
      readFileSync(join(stateDir, 'allowed_domains.txt'), 'utf8'),
      /^# codex-egress allowlist/,
      "the allowlist is the host's own file",
    );
    t.equal(
      (await docker(['exec', p.sandbox, 'cat', '/tmp/init-ran'])).stdout.trim(),
      `init ran as ${OWNER}`,
      '--init-script ran before handing over',
    );
  });

  await t.test('status', async (t) => {
    const r = await cli(['status', '--json']);
    t.equal(r.code, 0, 'running and healthy');
    const s = JSON.parse(r.stdout);
    t.equal(s.running, true);
    t.equal(s.healthy, true);
    t.same(
      s.containers.map((c: { name: string }) => c.name),
      [p.gateway, p.sandbox],
    );
    t.same(s.networks, [p.internalNetwork]);
    t.equal(s.allowlist.rules, 1);
    t.match(
      s.health.firewall,
      { up: true, interface: String, set: { name: 'codex-egress-allow' } },
      'the kernel firewall is on and verified',
    );
    t.notOk(s.health.firewall.disabled, 'not --no-firewall');
    t.ok(existsSync(s.auditLog), 'audit log exists where status says');
    const human = await cli(['status']);
    t.equal(human.code, 0);
    t.match(human.stdout, /^state {6}running, healthy · up \d+ (s|min)$/m, 'human summary: state and uptime');
    t.match(
      human.stdout,
      /^firewall {3}on, verified · interface \S+ · ports [0-9, ]+ · allow set \d+\/\d+ \([0-9.]+% full\)$/m,
      'the firewall, its ports and the allow set',
    );
    t.match(human.stdout, /^drops {6}.* since the gateway started$/m);
    t.match(human.stdout, /^sandbox {4}Codex's own sandbox OFF/m);
  });

  await t.test('allow and deny, live, persisted', async (t) => {
    const before = await sandboxCurl(`https://${LATER}/`);
    t.not(before.code, 0, `${LATER} not reachable before allow`);
    const reloadLines = () =>
      readFileSync(join(stateDir, 'logs', 'audit.jsonl'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"event":"reload"')).length;
    const reloadsBefore = reloadLines();
    const a = await cli(['allow', '--json', LATER]);
    t.equal(a.code, 0, a.stderr);
    const ar = JSON.parse(a.stdout);
    t.equal(ar.reload?.ok, true, 'the gateway confirmed the reload');
    await new Promise((r) => setTimeout(r, 2500)); // two of the watcher's polls
    t.equal(reloadLines() - reloadsBefore, 1, 'one edit, one reload (not the watcher, the poll and a signal each)');
    const again = await cli(['allow', LATER]);
    t.equal(again.code, 0, again.stderr);
    t.match(again.stdout, /no change/);
    await new Promise((r) => setTimeout(r, 1500));
    t.equal(reloadLines() - reloadsBefore, 1, 'an allow that changes nothing reloads nothing');
    const file = readFileSync(ar.file, 'utf8');
    t.match(file, new RegExp(`^${LATER.replace(/\./g, '\\.')}$`, 'm'), 'persisted to allowed_domains.txt');
    const during = await sandboxCurl(`https://${LATER}/after-allow`);
    t.equal(during.code, 0, `reachable after allow ${during.stderr}`);
    t.match(during.stdout, /hello from .* host=later\.example\.org path=\/after-allow/);
    const plain = await sandboxCurl(`http://${LATER}/plain`);
    t.match(plain.stdout, /hello from .*:80 host=later\.example\.org/, 'plain HTTP too');
    const domains = await cli(['domains', '--json']);
    t.same(
      JSON.parse(domains.stdout)
        .rules.map((r: { rule: string }) => r.rule)
        .sort(),
      [ALLOWED, LATER].sort(),
      'domains: effective list',
    );
    const d = await cli(['deny', '--json', LATER]);
    t.equal(d.code, 0, d.stderr);
    t.equal(JSON.parse(d.stdout).reload?.ok, true);
    const after = await sandboxCurl(`https://${LATER}/after-deny`);
    t.not(after.code, 0, 'refused again after deny');
    t.match(after.stderr, /403/);
    const bad = await cli(['allow', '*.com']);
    t.equal(bad.code, 2, 'an invalid rule is a usage error');
    t.notOk(
      (await world.queries()).some((q) => q.name === NEVER),
      'a denied name never reached the upstream DNS',
    );
  });

  await t.test('exec: codex exec in the running sandbox, run.log and exit.json', async (t) => {
    const out = join(tmp.path, 'run-ok');
    // Only OPENAI_API_KEY on the host: Codex gets it as CODEX_API_KEY, by name, never in an argument or a file.
    // the appliance was made with --credentials mount (above): the model where Codex itself holds the key
    const r = await cli(['exec', '--output', out, `https://${ALLOWED}/from-exec`], 180_000, { OPENAI_API_KEY: apiKey });
    t.equal(r.code, 0, r.stderr);
    const runLog = readFileSync(join(out, 'run.log'), 'utf8');
    t.match(
      runLog,
      `fake codex key: ${createHash('sha256').update(apiKey).digest('hex').slice(0, 12)}`,
      'Codex read the key from CODEX_API_KEY',
    );
    t.notOk(
      runLog.includes(apiKey) || readFileSync(join(out, 'exit.json'), 'utf8').includes(apiKey),
      'the key is in neither run.log nor exit.json',
    );
    t.notOk((await docker(['inspect', p.sandbox])).stdout.includes(apiKey), "nor in the container's configuration");
    t.match(runLog, /fake codex config: sandbox_mode="danger-full-access"/, 'Codex started with its own sandbox off');
    const made = statSync(join(project, 'codex-made.txt'));
    t.same([made.uid, made.gid], [OWNER, OWNER], "what Codex creates belongs to the project's owner");
    const runs = await cli(['exec', `https://${ALLOWED}/default-run-dir`]);
    t.equal(runs.code, 0, runs.stderr);
    const runDirs = readdirSync(join(stateDir, 'runs'));
    t.equal(runDirs.length, 1, 'the default run directory is in the state directory');
    t.ok(existsSync(join(stateDir, 'runs', runDirs[0]!, 'exit.json')));
    t.same(readdirSync(secret), ['id_rsa'], 'not through the planted .codex-egress/runs link');
    // From inside the running sandbox, a link where --output points: refused before anything is written.
    await docker(['exec', p.sandbox, 'ln', '-s', secret, join(project, 'out-link')]);
    const bad = await cli(['exec', '--output', join(project, 'out-link'), `https://${ALLOWED}/`]);
    t.equal(bad.code, 1, '--output through a link the sandbox made: refused');
    t.match(bad.stderr, `${project}/out-link is a symbolic link inside`);
    const inside = await cli(['exec', '--output', join(project, 'results'), `https://${ALLOWED}/`]);
    t.equal(inside.code, 1, '--output inside the workdir: refused');
    t.match(inside.stderr, /inside .*which the sandbox can change/);
    t.same(readdirSync(secret), ['id_rsa']);
    t.match(readFileSync(join(out, 'run.log'), 'utf8'), /hello from .* host=allowed\.example\.org path=\/from-exec/);
    const exit = JSON.parse(readFileSync(join(out, 'exit.json'), 'utf8'));
    t.equal(exit.exitCode, 0);
    t.ok(Date.parse(exit.finished) >= Date.parse(exit.started));
    t.ok(Array.isArray(exit.allowlist) && exit.allowlist.length >= 1, 'the allowlist recorded');
    const denied = join(tmp.path, 'run-denied');
    const d = await cli(['exec', '--output', denied, `https://${NEVER}/`]);
    t.not(d.code, 0, "Codex's failure is exec's exit code");
    t.equal(JSON.parse(readFileSync(join(denied, 'exit.json'), 'utf8')).exitCode, d.code);
    t.equal((await cli(['status'])).code, 0, 'exec on a running appliance leaves it running');
  });

  await t.test('logs show the decisions', async (t) => {
    await auditWritten();
    const r = await cli(['logs', '--json']);
    t.equal(r.code, 0);
    const lines = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    t.ok(
      lines.every((l) => l.v === 1),
      'every line versioned',
    );
    t.ok(
      lines.some((l) => l.event === 'connect' && l.host === LATER && l.decision === 'allow'),
      'the allowed CONNECT',
    );
    t.ok(
      lines.some((l) => l.event === 'connect' && l.host === LATER && l.decision === 'deny' && l.reason === 'denied-by-rule'),
      'the denied CONNECT after deny',
    );
    t.ok(
      lines.some((l) => l.event === 'reload' && l.ok === true && l.added?.includes(LATER)),
      'the reload',
    );
    t.ok(
      lines.some((l) => l.event === 'dns' && l.decision === 'deny'),
      'a denied DNS query',
    );
    const denied = await cli(['logs', '--denied']);
    const dl = denied.stdout.split('\n').filter(Boolean);
    t.ok(dl.length > 0 && dl.every((l) => /DENY|REJECTED/.test(l)), 'pretty, denials only');
    t.notMatch(denied.stdout, /\x1b\[/, 'no colour without a TTY');
    const since = await cli(['logs', '--json', '--since', '2000-01-01T00:00:00Z']);
    t.equal(since.stdout.split('\n').filter(Boolean).length, lines.length, '--since an old time: everything');
    const none = await cli(['logs', '--json', '--since', new Date(Date.now() + 3600_000).toISOString()]);
    t.equal(none.stdout.trim(), '', '--since the future: nothing');
    const follow = execa(process.execPath, [CLI, 'logs', '-f', '--json'], { cwd: project, env, reject: false });
    let followed = '';
    follow.stdout?.on('data', (d: Buffer) => (followed += String(d)));
    const followedLines = () => followed.split('\n').filter(Boolean).length;
    // Bounded waits on what it printed (not a fixed sleep: on a loaded machine node starts slowly).
    const until = async (pred: () => boolean, ms: number) => {
      for (const end = Date.now() + ms; !pred() && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
    };
    await until(() => followedLines() >= lines.length, 20_000);
    await new Promise((r) => setTimeout(r, 500)); // in its follow loop
    await sandboxCurl(`https://${ALLOWED}/while-following`);
    await until(() => followedLines() > lines.length, 10_000);
    follow.kill('SIGINT');
    const f = await follow;
    t.ok(String(f.stdout).split('\n').filter(Boolean).length > lines.length, 'logs -f prints new lines as they come');
  });

  await t.test(`Node ${NODE_LTS_MAJOR} fetch in the sandbox goes through the gateway`, async (t) => {
    t.equal((await cli(['allow', NODE_HOST])).code, 0);
    t.equal((await docker(['cp', join(tmp.path, 'world', 'cert.pem'), `${p.sandbox}:/tmp/world-ca.pem`])).code, 0);
    const script = `const r = await fetch('https://${NODE_HOST}/node-fetch'); console.log(process.version, r.status, await r.text());`;
    const ok = await docker([
      'exec',
      '-e',
      'NODE_EXTRA_CA_CERTS=/tmp/world-ca.pem',
      p.sandbox,
      'node',
      '--input-type=module',
      '-e',
      script,
    ]);
    t.equal(ok.code, 0, ok.stderr);
    t.match(
      ok.stdout,
      new RegExp(`^v${NODE_LTS_MAJOR}\\.\\S+ 200 hello from .* host=node\\.example\\.org path=/node-fetch`),
      'fetch works with the proxy variables alone',
    );
    await auditWritten();
    const lines = (await cli(['logs', '--json'])).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    t.ok(
      lines.some((l) => l.event === 'connect' && l.host === NODE_HOST && l.decision === 'allow'),
      'through the gateway: its CONNECT is in the audit log',
    );
    // Without NODE_USE_ENV_PROXY Node ignores the proxy. Transparent mode (the default) takes it to the name
    // through the gateway all the same; the direct way to the name's real address stays closed.
    const bare = await docker([
      'exec',
      '-e',
      'NODE_EXTRA_CA_CERTS=/tmp/world-ca.pem',
      p.sandbox,
      'env',
      '-u',
      'NODE_USE_ENV_PROXY',
      'node',
      '--input-type=module',
      '-e',
      `const r = await fetch('https://${NODE_HOST}/bare', { signal: AbortSignal.timeout(5000) }); console.log(r.status)`,
    ]);
    t.equal(bare.stdout.trim(), '200', `without NODE_USE_ENV_PROXY: through the gateway by name (transparent mode) ${bare.stderr}`);
    await auditWritten();
    const seen = (await cli(['logs', '--json'])).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    t.ok(
      seen.some((l) => l.event === 'connect' && l.host === NODE_HOST && l.mode === 'transparent' && l.decision === 'allow'),
      'its transparent connect is in the audit log',
    );
    const direct = await docker([
      'exec',
      '-e',
      'NODE_EXTRA_CA_CERTS=/tmp/world-ca.pem',
      p.sandbox,
      'env',
      '-u',
      'NODE_USE_ENV_PROXY',
      'node',
      '--input-type=module',
      '-e',
      `await fetch('http://${world.ip}/direct', { signal: AbortSignal.timeout(5000) })`,
    ]);
    t.not(direct.code, 0, 'without NODE_USE_ENV_PROXY Node ignores the proxy, and the direct way (to the real address) is closed');
  });

  await t.test('the gateway restarts by itself after a crash; the firewall is back exactly once before it serves', async (t) => {
    const audit = async () =>
      (await auditWritten(), await cli(['logs', '--json'])).stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const appliedBefore = (await audit()).filter((l) => l.event === 'firewall' && l.action === 'applied').length;
    t.equal((await docker(['exec', p.gateway, 'sh', '-c', KILL_NODE])).code, 0, "the gateway's node killed (SIGKILL) inside its container");
    let restarts = 0;
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      const st = (await docker(['inspect', '--format', '{{.RestartCount}} {{.State.Status}}', p.gateway])).stdout.trim().split(' ');
      restarts = Number(st[0]);
      if (restarts >= 1 && st[1] === 'running' && (await cli(['status'])).code === 0) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    if (restarts !== 1) {
      t.comment((await docker(['inspect', '--format', '{{json .State}}', p.gateway])).stdout);
      t.comment((await docker(['logs', '--tail', '30', p.gateway])).stderr);
    }
    t.equal(restarts, 1, 'restarted once by Docker');
    t.equal((await cli(['status'])).code, 0, 'healthy again');
    const after = await audit();
    const applied = after.filter((l) => l.event === 'firewall' && l.action === 'applied');
    t.equal(applied.length, appliedBefore + 1, 'the firewall applied exactly once more');
    const lastApplied = after.lastIndexOf(applied.at(-1)!);
    const lastStart = after.map((l) => l.event).lastIndexOf('start');
    t.ok(lastApplied >= 0 && lastStart > lastApplied, 'applied before the restarted gateway listened');
    const rules = (await docker(['exec', p.gateway, 'iptables', '-S'])).stdout;
    for (const [chain, ours] of [
      ['INPUT', 'CODEX-EGRESS-IN'],
      ['FORWARD', 'CODEX-EGRESS-FWD'],
      ['OUTPUT', 'CODEX-EGRESS-OUT'],
    ]) {
      t.equal(rules.split('\n').filter((l) => l === `-A ${chain} -j ${ours}`).length, 1, `one jump ${chain} -> ${ours}`);
    }
    t.match(
      (await sandboxCurl(`https://${ALLOWED}/after-restart`)).stdout,
      /host=allowed\.example\.org path=\/after-restart/,
      'allowed again',
    );
    t.match((await sandboxCurl(`https://${NEVER}/`)).stderr, /403|resolve/, 'denied still denied');
    const direct = await docker(['exec', p.sandbox, 'curl', '-sS', '--noproxy', '*', '-m', '4', `http://${world.ip}/`]);
    t.not(direct.code, 0, 'the direct way stays closed');
  });

  await t.test('verify again, then fail closed when the gateway stops', async (t) => {
    const v = await cli(['verify']);
    t.equal(v.code, 0, v.stdout);
    t.match(v.stdout, /PASS\s+host-bridge/);
    t.equal((await docker(['stop', '-t', '5', p.gateway])).code, 0);
    const r = await sandboxCurl(`https://${ALLOWED}/`);
    t.not(r.code, 0, 'no gateway: the sandbox reaches nothing');
    t.equal((await cli(['status'])).code, 4, 'status: not running');
    await new Promise((r) => setTimeout(r, 3000));
    t.equal(
      (await docker(['inspect', '--format', '{{.State.Status}} {{.RestartCount}}', p.gateway])).stdout.trim(),
      'exited 1',
      'a deliberate stop is not restarted',
    );
    t.equal((await cli(['verify'])).code, 4, 'verify: not running');
  });

  await t.test('down removes exactly what up made', async (t) => {
    const r = await cli(['down', '--json']);
    t.equal(r.code, 0, r.stderr);
    t.same(JSON.parse(r.stdout).removed.sort(), [p.gateway, p.internalNetwork, p.sandbox].sort());
    t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no container');
    t.equal((await docker(['network', 'ls', '-q', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no network');
    t.equal((await docker(['network', 'inspect', world.network])).code, 0, 'a network up did not make stays');
  });

  await t.test('up attached, default upstream (Docker DNS): runs Codex, returns its exit code, takes everything down', async (t) => {
    // No --upstream: the gateway uses its resolv.conf (Docker's embedded DNS), as in the product.
    // Two Ctrl-C while it takes the appliance down (as a user's repeated key press would) do not stop it.
    // --no-transparent: the verify line then shows the address Docker's DNS answered (not a pool address).
    const sub = execa(
      process.execPath,
      [CLI, 'up', '--no-defaults', '--no-transparent', '--allow', ALLOWED, '--egress-network', world.network, '--', '--version'],
      { cwd: project, env, extendEnv: false, reject: false, timeout: 240_000 },
    );
    let signalled = false;
    sub.stderr?.on('data', (d: Buffer) => {
      if (!signalled && d.toString().includes('taking the appliance down')) {
        signalled = true;
        sub.kill('SIGINT');
        setTimeout(() => sub.kill('SIGINT'), 150);
      }
    });
    const res = await sub;
    const r = { code: res.exitCode ?? 1, stdout: String(res.stdout), stderr: String(res.stderr) };
    t.match(r.stdout, /PASS\s+allowed-host\s+allowed\.example\.org: dns resolved 198\.51\.100\./, 'resolved through Docker DNS');
    t.equal(r.code, 0, r.stderr.slice(-500));
    t.match(r.stdout, /codex-cli 0\.0\.0-test/);
    t.ok(signalled, 'two SIGINTs sent during cleanup');
    t.match(r.stderr, /taking the appliance down, please wait/, 'answered, not obeyed');
    t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no container after Codex exits');
    t.equal((await docker(['network', 'ls', '-q', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no network');
  });

  await t.test(
    "--codex-sandbox: Codex's bubblewrap sandbox works in the container; links left in the Codex home are not followed",
    async (t) => {
      // What a sandbox could have left in its Codex home (it is read-write there): links to host paths.
      symlinkSync(join(secret, 'bashrc'), join(codexHome, 'config.toml'));
      symlinkSync(secret, join(codexHome, 'prompts'));
      symlinkSync(join(secret, 'id_rsa'), join(codexHome, 'auth.json'));
      mkdirSync(join(tmp.path, 'home', '.codex', 'prompts'), { recursive: true });
      writeFileSync(join(tmp.path, 'home', '.codex', 'config.toml'), 'model = "x"\n');
      writeFileSync(join(tmp.path, 'home', '.codex', 'prompts', 'p.md'), 'a prompt\n');
      writeFileSync(join(tmp.path, 'home', '.codex', 'auth.json'), '{"fake":true}\n');
      const script =
        'bwrap --ro-bind / / --unshare-user --unshare-net --dev /dev true; echo "bwrap=$?"; cat /home/codex/.codex/auth.json\n';
      const res = await execa(
        process.execPath,
        [
          CLI,
          'up',
          '--codex-sandbox',
          '--no-defaults',
          '--allow',
          ALLOWED,
          '--upstream',
          world.ip,
          '--egress-network',
          world.network,
          '--shell',
        ],
        {
          cwd: project,
          env,
          extendEnv: false,
          reject: false,
          timeout: 240_000,
          input: script,
        },
      );
      t.equal(res.exitCode, 0, String(res.stderr).slice(-600));
      t.match(String(res.stdout), /MODE\s+Codex's own sandbox ON/, 'verify says which mode is in force');
      t.match(String(res.stdout), /bwrap=0/, 'bubblewrap builds its namespaces');
      t.match(String(res.stdout), /"fake":true/, 'auth.json mounted read-only from the user');
      t.same(readdirSync(secret), ['id_rsa'], 'nothing created through the links (config.toml, prompts)');
      t.equal(readFileSync(join(secret, 'id_rsa'), 'utf8'), 'PRIVATE\n');
      t.equal(statSync(join(secret, 'id_rsa')).uid, 0, 'not chowned through a link');
      t.ok(lstatSync(join(codexHome, 'config.toml')).isSymbolicLink(), 'the link is left, not followed');
      t.ok(lstatSync(join(codexHome, 'auth.json')).isFile(), 'the auth.json mount point is a plain file again');
      t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'down after the shell');
    },
  );
}
