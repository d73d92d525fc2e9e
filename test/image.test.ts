// The appliance's pure parts: names, docker argument generation (the hardened topology), allowlist edits,
// the gateway image's production dependencies, the workdir checks. No Docker needed.
import t from 'tap';
import { GATEWAY_NODE_FLAGS } from '../proxy/runtime.js';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectFor } from '../image/names.js';
import {
  internalNetworkArgs,
  gatewayCreateArgs,
  gatewayCommandArgs,
  sandboxCreateArgs,
  connectEgressArgs,
  proxyEnv,
  sandboxExecArgs,
  buildArgs,
  GATEWAY_FIREWALL_DEFAULT,
  shellQuote,
  codexCommand,
  apiKeyEnv,
  sandboxUserFixArgs,
  type GatewayOptions,
  type SandboxOptions,
} from '../image/args.js';
import { editAllowlist, checkWorkdir, sandboxUser, statePaths, findAuthFile, seedCodexHome } from '../image/project.js';
import { productionPackages, codexSpecs, resolveDependencies } from '../image/context.js';
import {
  DNS_PORT,
  GATEWAY_ALLOWLIST_DIR,
  GATEWAY_ALLOWLIST_PATH,
  GATEWAY_AUDIT_PATH,
  GATEWAY_LOG_DIR,
  HEALTH_PATH,
  HEALTH_TIMING,
  PROXY_PORT,
  healthCommand,
} from '../proxy/endpoints.js';
import { defaultConfig } from '../proxy/config.js';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';

const p = projectFor('/home/alice/src/My Project!');
const gw: GatewayOptions = { image: 'gw:1', allowlistDir: '/state', logDir: '/state/logs', firewall: true, gid: 1000 };
const sb: SandboxOptions = { image: 'codex:1', uid: 1000, gid: 1000, codexHome: '/state/p/codex-home' };

/** The values following each occurrence of a flag. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

t.test('names derive from the project directory', async (t) => {
  t.match(p.name, /^codex-egress-my-project-[0-9a-f]{6}$/);
  t.equal(p.gateway, `${p.name}-gateway`);
  t.equal(p.sandbox, `${p.name}-sandbox`);
  t.match(p.subnet, /^10\.213\.\d+\.0\/24$/);
  t.equal(p.gatewayIp, p.subnet.replace('.0/24', '.2'));
  t.not(projectFor('/a/x').name, projectFor('/b/x').name, 'same basename, different directory: different names');
  t.equal(projectFor('/a/x/').name, projectFor('/a/x').name, 'stable');
  t.equal(projectFor('/a/x', '192.0.2.0/24').gatewayIp, '192.0.2.2', 'subnet override');
  t.throws(() => projectFor('/a/x', '10.0.0.0/16'), /\/24/);
});

t.test('internal network: internal, fixed subnet, no host address on the bridge', async (t) => {
  const a = internalNetworkArgs(p);
  t.ok(a.includes('--internal'));
  t.same(values(a, '--subnet'), [p.subnet]);
  t.same(values(a, '-o'), ['com.docker.network.bridge.inhibit_ipv4=true']);
  t.equal(a.at(-1), p.internalNetwork);
  t.ok(
    values(a, '--label').some((l) => l.endsWith(`=${p.name}`)),
    'labelled for down',
  );
});

t.test('gateway: static address, only the capabilities it needs, egress attached after create', async (t) => {
  const a = gatewayCreateArgs(p, gw);
  t.equal(a[0], 'create', 'created, not run: engine 20.10 rejects two --network flags');
  t.same(values(a, '--network'), [p.internalNetwork], 'one network at create');
  t.same(values(a, '--ip'), [p.gatewayIp]);
  t.same(values(a, '--cap-drop'), ['ALL']);
  t.same(values(a, '--cap-add').sort(), ['NET_ADMIN', 'NET_BIND_SERVICE', 'NET_RAW']);
  t.same(values(a, '--security-opt'), ['no-new-privileges']);
  t.ok(values(a, '--sysctl').includes('net.ipv6.conf.all.disable_ipv6=1'));
  t.ok(values(a, '--sysctl').includes('net.ipv4.conf.all.rp_filter=1'), 'strict reverse-path filtering (attack6)');
  t.ok(a.includes('--read-only'));
  t.same(values(a, '-v'), ['/state:/etc/codex', '/state/logs:/var/log/codex-egress']);
  t.same(values(a, '--restart'), ['on-failure'], 'restarted after a crash, not after a stop');
  t.ok(a.includes('--init'), 'node is not PID 1: a crash of node ends the container');
  t.ok(a.includes('--firewall') && !a.includes('--no-firewall'));
  t.same(connectEgressArgs(p, 'out'), ['network', 'connect', 'out', p.gateway]);
  const nofw = gatewayCreateArgs(p, { ...gw, firewall: false, upstreams: ['198.51.100.10'], allow: ['a.example.org'], noDefaults: true });
  t.same(values(nofw, '--cap-add'), ['NET_BIND_SERVICE'], 'no NET_ADMIN without the firewall');
  t.ok(nofw.includes('--no-firewall'));
  t.same(values(nofw, '--upstream'), ['198.51.100.10']);
  t.ok(nofw.includes('--no-defaults'));
  t.same(values(gatewayCommandArgs(p, gw), '--listen'), [p.gatewayIp], 'listens on the internal address only');
  t.type(GATEWAY_FIREWALL_DEFAULT, 'boolean', 'one switch for the firewall');
});

t.test('sandbox: internal network only, DNS and proxy = gateway, no capabilities, non-root', async (t) => {
  const a = sandboxCreateArgs(p, {
    ...sb,
    authFile: '/home/alice/.codex/auth.json',
    mounts: [{ host: '/w/.git', container: '/w/.git', readOnly: true }],
    gpus: 'all',
  });
  t.same(values(a, '--network'), [p.internalNetwork]);
  t.same(values(a, '--dns'), [p.gatewayIp]);
  t.same(values(a, '--cap-drop'), ['ALL']);
  t.same(values(a, '--cap-add'), [], 'no added capabilities');
  t.same(values(a, '--security-opt'), ['no-new-privileges']);
  t.ok(values(a, '--sysctl').includes('net.ipv6.conf.all.disable_ipv6=1'), 'IPv6 off');
  t.same(values(a, '--user'), ['1000:1000']);
  const env = Object.fromEntries(values(a, '-e').map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  const url = `http://${p.gatewayIp}:3128`;
  for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) t.equal(env[k], url, k);
  t.equal(env.NO_PROXY, env.no_proxy);
  t.equal(env.NODE_USE_ENV_PROXY, '1');
  t.same(proxyEnv(p).HTTPS_PROXY, url);
  const mounts = values(a, '-v');
  t.ok(mounts.includes(`${p.workdir}:${p.workdir}`), 'workdir at the same path');
  t.ok(mounts.includes('/home/alice/.codex/auth.json:/home/codex/.codex/auth.json:ro'), 'auth.json read-only');
  t.ok(mounts.includes('/w/.git:/w/.git:ro'));
  t.same(values(a, '-w'), [p.workdir]);
  t.same(values(a, '--gpus'), ['all']);
  t.same(sandboxExecArgs(p, ['codex'], { tty: true }), ['exec', '-i', '-t', '-w', p.workdir, p.sandbox, 'codex']);
  t.same(
    values(a, '--label').filter((l) => /codex-sandbox|\.user=/.test(l)),
    ['dev.codex-egress.codex-sandbox=off', 'dev.codex-egress.user=1000:1000'],
    'mode and user recorded',
  );
  t.ok(!values(a, '--security-opt').some((o) => /seccomp|apparmor/.test(o)), "default: Docker's seccomp and AppArmor profiles");
  const inner = sandboxCreateArgs(p, { ...sb, codexSandbox: 'inner' });
  t.same(
    values(inner, '--security-opt'),
    ['no-new-privileges', 'seccomp=unconfined', 'apparmor=unconfined'],
    "inner: bubblewrap's namespaces allowed, still no-new-privileges",
  );
  t.same(values(inner, '--cap-drop'), ['ALL'], 'inner: still no capabilities');
  t.same(values(inner, '--cap-add'), []);
  t.same(values(sandboxCreateArgs(p, { ...sb, uid: 1234, gid: 99 }), '--user'), ['1234:99'], 'the given user');
  t.same(sandboxUserFixArgs(p, 1234, 99).slice(0, 6), ['exec', '-u', '0:0', '-w', '/', p.sandbox]);
  t.same(sandboxUserFixArgs(p, 1234, 99).slice(-2), ['1234', '99']);
});

t.test("Codex's command line: our defaults first, the user's arguments last (they win)", async (t) => {
  t.same(codexCommand({ mode: 'off' }), ['codex', '-c', 'sandbox_mode="danger-full-access"']);
  t.same(codexCommand({ mode: 'off', autonomous: true, sub: ['exec'], userArgs: ['--sandbox', 'read-only', 'hi'] }), [
    'codex',
    '-c',
    'sandbox_mode="danger-full-access"',
    '-c',
    'approval_policy="never"',
    'exec',
    '--sandbox',
    'read-only',
    'hi',
  ]);
  t.same(
    codexCommand({ mode: 'inner', userArgs: ['resume', 'abc'] }),
    ['codex', 'resume', 'abc'],
    "inner: Codex's own sandbox settings apply",
  );
});

t.test('API keys: CODEX_API_KEY for Codex, from OPENAI_API_KEY when only that is set, passed by name', async (t) => {
  t.same(apiKeyEnv({}), { names: [], values: {} });
  t.same(apiKeyEnv({ OPENAI_API_KEY: 'sk-o' }), {
    names: ['CODEX_API_KEY', 'OPENAI_API_KEY'],
    values: { CODEX_API_KEY: 'sk-o', OPENAI_API_KEY: 'sk-o' },
    source: 'OPENAI_API_KEY',
  });
  t.same(
    apiKeyEnv({ CODEX_API_KEY: 'sk-c', OPENAI_API_KEY: 'sk-o' }).values,
    { CODEX_API_KEY: 'sk-c', OPENAI_API_KEY: 'sk-o' },
    'CODEX_API_KEY wins',
  );
  const args = sandboxExecArgs(p, ['codex'], { envNames: apiKeyEnv({ CODEX_API_KEY: 'sk-secret' }).names });
  t.same(values(args, '-e'), ['CODEX_API_KEY'], 'by name');
  t.notOk(args.join(' ').includes('sk-secret'), 'the value is never in the argument list');
  t.notOk(sandboxCreateArgs(p, sb).join(' ').includes('API_KEY'), "nor in the container's stored configuration");
});

t.test('build arguments and quoting', async (t) => {
  t.same(buildArgs({ dockerfile: '/c/Dockerfile', context: '/c', tag: 'x:1', buildArgs: { BASE_IMAGE: 'b' } }), [
    'build',
    '--force-rm',
    '-f',
    '/c/Dockerfile',
    '-t',
    'x:1',
    '--build-arg',
    'BASE_IMAGE=b',
    '/c',
  ]);
  t.equal(shellQuote("it's"), `'it'\\''s'`);
  t.equal(shellQuote('node'), 'node');
  t.same(codexSpecs('1.2.3', 'linux-x64'), ['@openai/codex@1.2.3', '@openai/codex@1.2.3-linux-x64']);
});

t.test('allow/deny edit the allowlist file text', async (t) => {
  const base = '# mine\ngithub.com\n';
  const a = editAllowlist(base, 'allow', ['Example.org', 'github.com']);
  t.equal(a.content, '# mine\ngithub.com\nExample.org\n');
  t.same(a.changed, ['Example.org'], 'an existing rule is not repeated');
  const d = editAllowlist(a.content, 'deny', ['github.com']);
  t.equal(d.content, '# mine\nExample.org\n!github.com\n', 'deny removes the rule and adds !rule');
  const again = editAllowlist(d.content, 'allow', ['github.com']);
  t.equal(again.content, '# mine\nExample.org\ngithub.com\n', 'allow removes the !rule');
  t.throws(() => editAllowlist(base, 'allow', ['*', 'https://x.org/']), /invalid rules/);
  t.throws(() => editAllowlist(base, 'allow', ['1.2.3.4']), /invalid rule/);
});

t.test('production packages from the lockfile', async (t) => {
  const lock = {
    packages: {
      '': {},
      'node_modules/a': {},
      'node_modules/tap': { dev: true },
      'node_modules/b/node_modules/c': {},
      'node_modules/o': { devOptional: true },
    },
  };
  t.same(productionPackages(lock), ['node_modules/a', 'node_modules/b/node_modules/c']);
});

t.test('workdir checks, state paths and the sandbox user', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'codex-egress-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'ws', 'proj'), { recursive: true });
  t.throws(() => checkWorkdir('/'), /refusing to use \//);
  t.throws(() => checkWorkdir(dir, {}, dir), /home directory/);
  t.equal(checkWorkdir(join(dir, 'ws', 'proj'), { WORKSPACE_ROOT_DIR: join(dir, 'ws') }, '/nonexistent'), join(dir, 'ws', 'proj'));
  t.throws(() => checkWorkdir(dir, { WORKSPACE_ROOT_DIR: join(dir, 'ws') }, '/nonexistent'), /outside WORKSPACE_ROOT_DIR/);
  t.throws(() => checkWorkdir(join(dir, 'nope'), {}, '/nonexistent'), /not a directory/);
  const s = statePaths(projectFor(join(dir, 'ws', 'proj')), { CODEX_EGRESS_STATE_DIR: join(dir, 'state') });
  t.ok(s.allowlist.startsWith(join(dir, 'state')), 'gateway state outside the workdir');
  t.ok(!s.allowlist.startsWith(join(dir, 'ws')), 'the sandbox cannot reach its own allowlist');
  t.throws(() => sandboxUser({ uid: 0, gid: 0 }), /owned by root/, 'never root (unless --user asks: test/paths.test.ts)');
  t.same(sandboxUser({ uid: 1234, gid: 99 }), { uid: 1234, gid: 99, source: 'workdir-owner' });
  t.equal(findAuthFile(undefined, { CODEX_CONFIG_DIR: join(dir, 'none') }, join(dir, 'nohome')), undefined);
});

t.test('an installed package (no lockfile): dependencies found by Node resolution', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'codex-egress-deps-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pkg = (path: string, deps: Record<string, string> = {}) => {
    mkdirSync(path, { recursive: true });
    writeFileSync(join(path, 'package.json'), JSON.stringify({ name: path.split('node_modules/').at(-1), dependencies: deps }));
  };
  // node_modules/codex-egress (the package) with a, which needs b (hoisted) and c (nested in a)
  pkg(join(dir, 'node_modules', 'codex-egress'), { a: '1' });
  pkg(join(dir, 'node_modules', 'a'), { b: '1', c: '1' });
  pkg(join(dir, 'node_modules', 'b'));
  pkg(join(dir, 'node_modules', 'a', 'node_modules', 'c'));
  pkg(join(dir, 'node_modules', 'tap')); // not a dependency
  const found = await resolveDependencies(join(dir, 'node_modules', 'codex-egress'));
  t.same([...found.values()].sort(), ['node_modules/a', 'node_modules/a/node_modules/c', 'node_modules/b'], 'nesting kept');
  t.equal(found.get(join(dir, 'node_modules', 'b')), 'node_modules/b');
});

t.test('Codex home: config.toml copied if missing, prompts without overwriting, auth.json found in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'codex-egress-home-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const home = join(dir, 'home');
  mkdirSync(join(home, '.codex', 'prompts'), { recursive: true });
  writeFileSync(join(home, '.codex', 'config.toml'), 'model = "x"\n');
  writeFileSync(join(home, '.codex', 'auth.json'), '{}');
  writeFileSync(join(home, '.codex', 'prompts', 'a.md'), 'user a');
  writeFileSync(join(home, '.codex', 'prompts', 'b.md'), 'user b');
  const codexHome = join(dir, 'project', '.codex-egress', 'codex-home');
  mkdirSync(join(codexHome, 'prompts'), { recursive: true });
  writeFileSync(join(codexHome, 'prompts', 'a.md'), 'project a');
  await seedCodexHome(codexHome, {}, home);
  t.equal(readFileSync(join(codexHome, 'config.toml'), 'utf8'), 'model = "x"\n', 'config.toml copied');
  t.equal(readFileSync(join(codexHome, 'prompts', 'a.md'), 'utf8'), 'project a', 'an existing prompt is kept');
  t.equal(readFileSync(join(codexHome, 'prompts', 'b.md'), 'utf8'), 'user b', 'a missing prompt is copied');
  t.notOk(existsSync(join(codexHome, 'auth.json')), 'auth.json is never copied');
  writeFileSync(join(home, '.codex', 'config.toml'), 'model = "changed"\n');
  await seedCodexHome(codexHome, {}, home);
  t.equal(readFileSync(join(codexHome, 'config.toml'), 'utf8'), 'model = "x"\n', 'an existing config.toml is kept');

  t.equal(findAuthFile(undefined, {}, home), join(home, '.codex', 'auth.json'), '~/.codex/auth.json');
  const other = join(dir, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'auth.json'), '{}');
  t.equal(findAuthFile(undefined, { CODEX_CONFIG_DIR: other }, home), join(other, 'auth.json'), 'CODEX_CONFIG_DIR first');
  t.equal(
    findAuthFile(undefined, { CODEX_AUTH_FILE: join(other, 'auth.json'), CODEX_CONFIG_DIR: join(home, '.codex') }, home),
    join(other, 'auth.json'),
    'CODEX_AUTH_FILE before that',
  );
  t.equal(findAuthFile(join(other, 'auth.json'), {}, home), join(other, 'auth.json'), '--auth-file first of all');
  t.throws(() => findAuthFile(join(dir, 'missing.json'), {}, home), /does not exist/);
});

t.test('ports and the health check are stated once (proxy/endpoints.ts): the docker arguments and the image use them', async (t) => {
  const a = gatewayCreateArgs(p, gw);
  t.same(values(a, '--health-cmd'), [healthCommand(p.gatewayIp).map(shellQuote).join(' ')]);
  t.same(
    [values(a, '--health-interval'), values(a, '--health-timeout'), values(a, '--health-retries'), values(a, '--health-start-period')],
    [[HEALTH_TIMING.interval], [HEALTH_TIMING.timeout], [String(HEALTH_TIMING.retries)], [HEALTH_TIMING.startPeriod]],
  );
  t.match(healthCommand(p.gatewayIp)[2], `"http://${p.gatewayIp}:${PROXY_PORT}${HEALTH_PATH}"`);
  const cmd = gatewayCommandArgs(p, gw);
  t.same(
    [values(cmd, '--dns-port'), values(cmd, '--proxy-port'), values(cmd, '--allowlist'), values(cmd, '--audit-log')],
    [[String(DNS_PORT)], [String(PROXY_PORT)], [GATEWAY_ALLOWLIST_PATH], [GATEWAY_AUDIT_PATH]],
  );
  t.same([defaultConfig().dnsPort, defaultConfig().proxyPort], [DNS_PORT, PROXY_PORT], "the gateway's own defaults");

  // The Dockerfile cannot import: its values are read and held to the module.
  const file = readFileSync(new URL('../image/Dockerfile.gateway', import.meta.url), 'utf8');
  const hc = /^HEALTHCHECK --interval=(\S+) --timeout=(\S+) --start-period=(\S+) --retries=(\d+) \\\n\s+CMD (\[.*\])$/m.exec(file);
  t.ok(hc, 'one HEALTHCHECK in exec form');
  t.same(hc?.slice(1, 5), [HEALTH_TIMING.interval, HEALTH_TIMING.timeout, HEALTH_TIMING.startPeriod, String(HEALTH_TIMING.retries)]);
  t.same(JSON.parse(hc?.[5] ?? 'null'), healthCommand('127.0.0.1'), 'the same check, aimed at loopback');
  const run = /^CMD (\[.*\])$/m.exec(file);
  t.same(JSON.parse(run?.[1] ?? 'null'), ['--allowlist', GATEWAY_ALLOWLIST_PATH, '--audit-log', GATEWAY_AUDIT_PATH]);
  t.same(/^RUN mkdir -p (.*)$/m.exec(file)?.[1]?.split(' '), [GATEWAY_ALLOWLIST_DIR, GATEWAY_LOG_DIR]);
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(file);
  t.same(
    JSON.parse(entry?.[1] ?? 'null'),
    ['node', ...GATEWAY_NODE_FLAGS, '/opt/codex-egress/bin/codex-egress.js', 'gateway'],
    "the gateway runs with proxy/runtime.ts's Node flags",
  );
});
