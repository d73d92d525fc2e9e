// End to end with a real Docker engine (test/harness/docker-setup.sh prepares it): images built from the
// project's Dockerfiles on the local base image, `up --detach` in a temp project behind a fake internet on
// an --internal network, verify, allow/deny live, exec, logs, status, fail-closed, `down` leaving nothing.
import t from 'tap';
type Tap = typeof t;
import { execa } from 'execa';
import { existsSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import { BASE_IMAGE, dockerOk, docker, packFakeCodex, startDockerWorld, removeE2E, type DockerWorld } from './harness/docker.js';
import { projectFor } from '../image/names.js';
import { PROJECT_LABEL } from '../image/names.js';

const id = `${process.pid}-${Date.now().toString(36)}`;
const images = { gateway: `codex-egress-e2e-gateway:${id}`, codex: `codex-egress-e2e-codex:${id}` };
const ALLOWED = 'allowed.example.org';
const LATER = 'later.example.org';
const NEVER = 'never.example.org';

t.test('docker end to end', async (t) => {
  const engine = await dockerOk();
  if (!engine) {
    // In CI the engine must be there (.ci/run calls docker-setup.sh); elsewhere, say why nothing ran.
    if (process.env.CI) t.fail('no Docker engine: run test/harness/docker-setup.sh first');
    else t.skip('no Docker engine: run test/harness/docker-setup.sh to enable the Docker end-to-end test');
    return;
  }
  await run(t, engine);
});

async function run(t: Tap, engine: string) {
  const tmp = tempDir('codex-egress-e2e-');
  const project = join(tmp.path, 'my-project');
  mkdirSync(project);
  mkdirSync(join(tmp.path, 'home'));
  const p = projectFor(project);
  const env = {
    ...process.env,
    HOME: join(tmp.path, 'home'),
    CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'),
    CODEX_EGRESS_IMAGE: images.codex,
    CODEX_EGRESS_GATEWAY_IMAGE: images.gateway,
    NO_COLOR: '1',
  };
  delete env.OPENAI_ALLOWED_DOMAINS;
  delete env.CODEX_AUTH_FILE;
  delete env.CODEX_CONFIG_DIR;
  delete env.WORKSPACE_ROOT_DIR;
  const cli = async (args: string[], timeout = 180_000) => {
    const r = await execa(process.execPath, [CLI, ...args], { cwd: project, env, reject: false, timeout });
    return { code: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  /** curl from inside the sandbox, through the proxy variables only. */
  const sandboxCurl = (url: string) => docker(['exec', p.sandbox, 'curl', '-sS', '-k', '-m', '8', url], 30_000);

  t.teardown(async () => {
    await docker(['rm', '-f', '-v', p.sandbox, p.gateway]);
    for (const n of [p.internalNetwork, p.egressNetwork]) await docker(['network', 'rm', n]);
    await removeE2E(id, [images.gateway, images.codex]);
    if (!process.env.KEEP_E2E) tmp.remove();
  });

  t.ok(engine, `engine ${engine}`);
  const base = await docker(['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE]);
  if (base.code !== 0) {
    t.fail(`base image ${BASE_IMAGE} missing: run test/harness/docker-setup.sh`);
    return;
  }

  let world!: DockerWorld;
  const upArgs = () => ['--no-defaults', '--allow', ALLOWED, '--upstream', world.ip, '--egress-network', world.network];

  await t.test('build: both images from the Dockerfiles on the local base, no registry', async (t) => {
    const codex = await packFakeCodex(tmp.path);
    const r = await cli(['build', '--base', BASE_IMAGE, '--codex-tarballs', codex, '--build-arg', 'PACKAGES=ca-certificates git curl', '--quiet'], 600_000);
    t.equal(r.code, 0, `build exit 0 ${r.stderr.slice(-600)}`);
    const v = await docker(['run', '--rm', '--network', 'none', images.codex, 'sh', '-c', 'id -u; codex --version']);
    t.match(v.stdout, /^1000\n[^]*codex-cli 0\.0\.0-test/, 'sandbox image: non-root user, Codex installed from the packed tarball');
    world = await startDockerWorld(tmp.path, id, [ALLOWED, LATER, NEVER]);
  });

  // assigned in the build subtest; without the fake internet nothing else can run
  if (!world) return;

  await t.test('doctor: engine, images, iptables and ipset in the gateway', async (t) => {
    const r = await cli(['doctor', '--json']);
    const d = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ id: string; ok: boolean; detail: string }> };
    t.equal(r.code, 0, JSON.stringify(d.checks.filter((c) => !c.ok)));
    t.same(d.checks.map((c) => c.id), ['docker-client', 'docker-engine', 'image-gateway', 'image-codex', 'gateway-firewall-tools']);
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

  await t.test('up --detach: hardened topology, every verify probe green', async (t) => {
    const started = Date.now();
    mkdirSync(join(project, '.git'));
    mkdirSync(join(tmp.path, 'reference'));
    writeFileSync(join(tmp.path, 'init.sh'), 'echo "init ran as $(id -u)" > /tmp/init-ran\n');
    const r = await cli(['up', '--detach', '--json', ...upArgs(), '--git-readonly', '--read-only', join(tmp.path, 'reference'), '--init-script', join(tmp.path, 'init.sh')]);
    t.equal(r.code, 0, `up exit 0 ${r.stderr.slice(-800)}`);
    const verdict = JSON.parse(r.stdout) as { ok: boolean; probes: Array<{ id: string; ok: boolean; detail: string }> };
    t.ok(verdict.ok, 'all probes pass');
    t.same(
      verdict.probes.map((x) => x.id),
      ['gateway-healthy', 'allowed-host', 'denied-host', 'ip-literal', 'direct-dns', 'ipv6', 'lan', 'metadata', 'host-bridge'],
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
    t.equal(sb.Config.User, '1000:1000', 'non-root');
    t.ok(sb.Config.Env.includes(`HTTPS_PROXY=http://${p.gatewayIp}:3128`) && sb.Config.Env.includes(`https_proxy=http://${p.gatewayIp}:3128`));
    const gw = JSON.parse((await docker(['inspect', p.gateway])).stdout)[0];
    t.same(Object.keys(gw.NetworkSettings.Networks).sort(), [p.internalNetwork, world.network].sort(), 'gateway: internal + egress');
    t.equal(gw.NetworkSettings.Networks[p.internalNetwork].IPAddress, p.gatewayIp, 'gateway at its static address');
    t.equal(gw.State.Health?.Status === undefined ? 'none' : 'has-healthcheck', 'has-healthcheck');
    const id = await docker(['exec', p.sandbox, 'id', '-u']);
    t.equal(id.stdout.trim(), '1000');
    const mounts = sb.Mounts as Array<{ Source: string; Destination: string; RW: boolean }>;
    const mount = (dest: string) => mounts.find((m) => m.Destination === dest);
    t.equal(mount(project)?.RW, true, 'workdir at the same path, read-write');
    t.equal(mount(join(project, '.git'))?.RW, false, '--git-readonly');
    t.equal(mount(join(tmp.path, 'reference'))?.RW, false, '--read-only PATH');
    t.notOk(mounts.some((m) => m.Source.startsWith(join(tmp.path, 'state'))), 'the gateway state (allowlist, audit log) is not in the sandbox');
    t.equal((await docker(['exec', p.sandbox, 'cat', '/tmp/init-ran'])).stdout.trim(), 'init ran as 1000', '--init-script ran before handing over');
  });

  await t.test('status', async (t) => {
    const r = await cli(['status', '--json']);
    t.equal(r.code, 0, 'running and healthy');
    const s = JSON.parse(r.stdout);
    t.equal(s.running, true);
    t.equal(s.healthy, true);
    t.same(s.containers.map((c: { name: string }) => c.name), [p.gateway, p.sandbox]);
    t.same(s.networks, [p.internalNetwork]);
    t.equal(s.allowlist.rules, 1);
    t.match(s.health.firewall, { up: true, interface: String, set: { name: 'codex-egress-allow' } }, 'the kernel firewall is on and verified');
    t.notOk(s.health.firewall.disabled, 'not --no-firewall');
    t.ok(existsSync(s.auditLog), 'audit log exists where status says');
  });

  await t.test('allow and deny, live, persisted', async (t) => {
    const before = await sandboxCurl(`https://${LATER}/`);
    t.not(before.code, 0, `${LATER} not reachable before allow`);
    const a = await cli(['allow', '--json', LATER]);
    t.equal(a.code, 0, a.stderr);
    const ar = JSON.parse(a.stdout);
    t.equal(ar.reload?.ok, true, 'the gateway confirmed the reload');
    const file = readFileSync(ar.file, 'utf8');
    t.match(file, new RegExp(`^${LATER.replace(/\./g, '\\.')}$`, 'm'), 'persisted to allowed_domains.txt');
    const during = await sandboxCurl(`https://${LATER}/after-allow`);
    t.equal(during.code, 0, `reachable after allow ${during.stderr}`);
    t.match(during.stdout, /hello from .* host=later\.example\.org path=\/after-allow/);
    const plain = await sandboxCurl(`http://${LATER}/plain`);
    t.match(plain.stdout, /hello from .*:80 host=later\.example\.org/, 'plain HTTP too');
    const domains = await cli(['domains', '--json']);
    t.same(JSON.parse(domains.stdout).rules.map((r: { rule: string }) => r.rule).sort(), [ALLOWED, LATER].sort(), 'domains: effective list');
    const d = await cli(['deny', '--json', LATER]);
    t.equal(d.code, 0, d.stderr);
    t.equal(JSON.parse(d.stdout).reload?.ok, true);
    const after = await sandboxCurl(`https://${LATER}/after-deny`);
    t.not(after.code, 0, 'refused again after deny');
    t.match(after.stderr, /403/);
    const bad = await cli(['allow', '*.com']);
    t.equal(bad.code, 2, 'an invalid rule is a usage error');
    t.notOk((await world.queries()).some((q) => q.name === NEVER), 'a denied name never reached the upstream DNS');
  });

  await t.test('exec: codex exec in the running sandbox, run.log and exit.json', async (t) => {
    const out = join(tmp.path, 'run-ok');
    const r = await cli(['exec', '--output', out, `https://${ALLOWED}/from-exec`]);
    t.equal(r.code, 0, r.stderr);
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
    const r = await cli(['logs', '--json']);
    t.equal(r.code, 0);
    const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    t.ok(lines.every((l) => l.v === 1), 'every line versioned');
    t.ok(lines.some((l) => l.event === 'connect' && l.host === LATER && l.decision === 'allow'), 'the allowed CONNECT');
    t.ok(lines.some((l) => l.event === 'connect' && l.host === LATER && l.decision === 'deny' && l.reason === 'denied-by-rule'), 'the denied CONNECT after deny');
    t.ok(lines.some((l) => l.event === 'reload' && l.ok === true && l.added?.includes(LATER)), 'the reload');
    t.ok(lines.some((l) => l.event === 'dns' && l.decision === 'deny'), 'a denied DNS query');
    const denied = await cli(['logs', '--denied']);
    const dl = denied.stdout.split('\n').filter(Boolean);
    t.ok(dl.length > 0 && dl.every((l) => /DENY|REJECTED/.test(l)), 'pretty, denials only');
    t.notMatch(denied.stdout, /\x1b\[/, 'no colour without a TTY');
    const since = await cli(['logs', '--json', '--since', '2000-01-01T00:00:00Z']);
    t.equal(since.stdout.split('\n').filter(Boolean).length, lines.length, '--since an old time: everything');
    const none = await cli(['logs', '--json', '--since', new Date(Date.now() + 3600_000).toISOString()]);
    t.equal(none.stdout.trim(), '', '--since the future: nothing');
    const follow = execa(process.execPath, [CLI, 'logs', '-f', '--json'], { cwd: project, env, reject: false });
    await new Promise((r) => setTimeout(r, 800));
    await sandboxCurl(`https://${ALLOWED}/while-following`);
    await new Promise((r) => setTimeout(r, 1500));
    follow.kill('SIGINT');
    const f = await follow;
    t.ok(String(f.stdout).split('\n').filter(Boolean).length > lines.length, 'logs -f prints new lines as they come');
  });

  await t.test('verify again, then fail closed when the gateway stops', async (t) => {
    const v = await cli(['verify']);
    t.equal(v.code, 0, v.stdout);
    t.match(v.stdout, /PASS\s+host-bridge/);
    t.equal((await docker(['stop', '-t', '5', p.gateway])).code, 0);
    const r = await sandboxCurl(`https://${ALLOWED}/`);
    t.not(r.code, 0, 'no gateway: the sandbox reaches nothing');
    t.equal((await cli(['status'])).code, 4, 'status: not running');
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
    const r = await cli(['up', '--no-defaults', '--allow', ALLOWED, '--egress-network', world.network, '--', '--version']);
    t.match(r.stdout, /PASS\s+allowed-host\s+allowed\.example\.org: dns resolved 198\.51\.100\./, 'resolved through Docker DNS');
    t.equal(r.code, 0, r.stderr.slice(-500));
    t.match(r.stdout, /codex-cli 0\.0\.0-test/);
    t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no container after Codex exits');
    t.equal((await docker(['network', 'ls', '-q', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no network');
  });
}
