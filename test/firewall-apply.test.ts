// Applying the firewall for real (iptables, ip6tables, ipset, sysctl) inside a namespace of the test's own:
// idempotent, verified by reading back, torn down exactly; and the gateway's fail-closed start.
import t from 'tap';
import { Netns, link } from './harness/netns.js';
import { CLI, startGatewayIn, tempDir } from './harness/world.js';
import { applyFirewall, teardownFirewall, verifyFirewall, type Exec } from '../firewall/apply.js';
import type { FirewallPlan } from '../firewall/rules.js';
import { startFirewall } from '../firewall/index.js';
import { defaultConfig, parseConfig } from '../proxy/config.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import { Allowlist } from '../proxy/policy/allowlist.js';
import type { AuditEvent } from '../proxy/audit.js';

let ns: Netns;
let peer: Netns;
let iface: string;
let exec: Exec;
const dir = tempDir();

t.before(async () => {
  ns = await Netns.create('ce-fw');
  peer = await Netns.create('ce-fwp');
  iface = (await link(ns, '10.30.0.1/24', peer, '10.30.0.2/24')).aIf;
  exec = async (cmd, args, input) => String((await ns.run(cmd, args, { input })).stdout);
});
t.teardown(async () => {
  await ns?.destroy();
  await peer?.destroy();
  dir.remove();
});

const plan = (): FirewallPlan => ({
  sandboxInterface: iface,
  listen: '10.30.0.1',
  dnsPort: 53,
  proxyPort: 3128,
  upstreams: [{ host: '192.0.2.53', port: 53 }],
  setSize: 1000,
  minTtl: 60,
});

/** Everything apply may touch: both filter tables, all sets, the IPv6 sysctls. */
async function snapshot(): Promise<string> {
  const parts = [
    await exec('iptables-save', ['-t', 'filter']),
    await exec('ip6tables-save', ['-t', 'filter']),
    await exec('ipset', ['save']),
    await exec('sysctl', ['net.ipv6.conf.all.disable_ipv6', 'net.ipv6.conf.default.disable_ipv6']),
  ];
  return parts
    .join('\n')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, '').replace(/ initval 0x[0-9a-f]+/, '')) // policy counters; a set's random seed
    .join('\n');
}

t.test('apply is idempotent, keeps foreign rules, and teardown removes exactly what it added', async (t) => {
  // Someone else's rules and set, which must survive both apply and teardown.
  await exec('iptables', ['-A', 'INPUT', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']);
  await exec('iptables', ['-N', 'SOMEONE-ELSE']);
  await exec('ip6tables', ['-P', 'FORWARD', 'DROP']);
  await exec('ipset', ['create', 'someone-else', 'hash:ip']);
  const before = await snapshot();

  const applied = await applyFirewall(plan(), [80, 443], exec);
  t.equal(applied.ipv6Disabled, true);
  t.same(applied.v6Policies, { INPUT: 'ACCEPT', FORWARD: 'DROP', OUTPUT: 'ACCEPT' }, 'the IPv6 policies found are remembered');
  const once = await snapshot();
  t.match(
    once,
    /^-A INPUT -j CODEX-EGRESS-IN\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT$/m,
    'our jump first, the foreign rule kept after it',
  );
  t.match(once, /^:SOMEONE-ELSE -$/m);
  t.match(once, /^create someone-else hash:ip/m);

  await applyFirewall(plan(), [80, 443], exec);
  t.equal(await snapshot(), once, 'applying again changes nothing');

  await teardownFirewall(applied, exec);
  t.equal(await snapshot(), before, 'teardown leaves the namespace exactly as it was');
});

t.test('verification reads back and names every difference; re-applying repairs them', async (t) => {
  const applied = await applyFirewall(plan(), [443], exec);
  await verifyFirewall(plan(), [443], exec);
  t.pass('a fresh apply verifies');
  const breakages: Array<[string, string[], RegExp]> = [
    [
      'a rule deleted',
      ['iptables', '-D', 'CODEX-EGRESS-FWD', '1'],
      /iptables CODEX-EGRESS-FWD differs: missing \[-m comment --comment "codex-egress:forward-drop" -j DROP\]/,
    ],
    ['a jump duplicated', ['iptables', '-A', 'OUTPUT', '-j', 'CODEX-EGRESS-OUT'], /iptables OUTPUT: 2 jumps to CODEX-EGRESS-OUT, want 1/],
    [
      'a rule put before our jump',
      ['iptables', '-I', 'FORWARD', '1', '-j', 'ACCEPT'],
      /iptables FORWARD: the jump to CODEX-EGRESS-FWD is not the first rule/,
    ],
    ['an IPv6 policy opened', ['ip6tables', '-P', 'OUTPUT', 'ACCEPT'], /ip6tables OUTPUT: policy ACCEPT, want DROP/],
    ['a port added', ['ipset', 'add', 'codex-egress-ports', '22'], /codex-egress-ports: ports 22,443, want 443/],
  ];
  for (const [what, [cmd, ...args], expected] of breakages) {
    await exec(cmd!, args);
    await t.rejects(verifyFirewall(plan(), [443], exec), { code: 'ERR_FIREWALL', message: expected }, what);
    await applyFirewall(plan(), [443], exec);
    if (what === 'a rule put before our jump') await exec('iptables', ['-D', 'FORWARD', '-j', 'ACCEPT']);
    await verifyFirewall(plan(), [443], exec);
    t.pass(`${what}: re-applying repairs it`);
  }
  await teardownFirewall(applied, exec);
});

const allowlist = (...rules: string[]) => {
  const r = parseRuleList(rules, 'flag', '--allow');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return new Allowlist(r.rules);
};

t.test('the firewall handle: set-full audited, a reload the kernel refuses makes it unhealthy, the next one heals', async (t) => {
  const events: AuditEvent[] = [];
  const audit = { write: (e: AuditEvent) => void events.push(e), close: async () => undefined };
  let ipsetFails = false;
  const flaky: Exec = (cmd, args, input) =>
    ipsetFails && cmd === 'ipset' ? Promise.reject(new Error('ipset: simulated failure')) : exec(cmd, args, input);
  const cfg = parseConfig({ ...defaultConfig(), listen: '10.30.0.1', upstreams: ['192.0.2.53'], firewallSetSize: 1 });
  const reports: string[] = [];
  const fw = await startFirewall(cfg, audit, allowlist('a.example', 'b.example'), (m) => void reports.push(m), {
    exec: flaky,
    pollMs: 100,
  });
  t.match(fw.status(), { up: true, interface: iface, ports: [80, 443], set: { entries: 0, size: 1 } });
  t.match(events[0], { event: 'firewall', action: 'applied', interface: iface, set_size: 1 });

  await fw.onResolved('a.example', ['192.0.2.1'], 30);
  t.match(
    await exec('ipset', ['list', 'codex-egress-allow']),
    /^192\.0\.2\.1 timeout (89|90)$/m,
    'in the kernel set, TTL 30 clamped to 60 (promised), told with 1.5× headroom',
  );
  await t.rejects(fw.onResolved('b.example', ['192.0.2.2'], 30), { code: 'ERR_SET_FULL' });
  t.match(events.at(-1), { event: 'firewall', action: 'set-full', name: 'b.example', ips: ['192.0.2.2'], set_size: 1 });

  ipsetFails = true;
  await fw.onReload(allowlist('b.example:8443'));
  t.match(fw.status(), { up: false, problem: /did not follow the last reload: .*simulated failure/ });
  t.match(reports.at(-1), /^the firewall did not follow the last reload: .*simulated failure/, 'and reported');
  ipsetFails = false;
  await fw.onReload(allowlist('b.example:8443'));
  t.match(fw.status(), { up: true, ports: [8443], set: { entries: 0 } });
  t.match(events.at(-1), { event: 'firewall', action: 'reload', ports: [8443], flushed: ['192.0.2.1'] });
  t.notMatch(await exec('ipset', ['list', 'codex-egress-allow']), /192\.0\.2\.1/, 'a.example’s address flushed from the kernel');
  // A lookup that began before the reload and answers after it must not put the address back.
  await t.rejects(fw.onResolved('a.example', ['192.0.2.1'], 30), { code: 'ERR_FIREWALL', message: /no longer allowed/ });
  t.notMatch(
    await exec('ipset', ['list', 'codex-egress-allow']),
    /192\.0\.2\.1/,
    'a late answer for a removed name stays out of the kernel',
  );

  await fw.stop();
  t.match(events.at(-1), { event: 'firewall', action: 'stop', rules_kept: true });
  t.match(await exec('iptables-save', ['-t', 'filter']), /-A FORWARD -j CODEX-EGRESS-FWD/, 'rules kept after stop');
  const namespaceDefaults = { 'net.ipv6.conf.all.disable_ipv6': '0', 'net.ipv6.conf.default.disable_ipv6': '0' };
  await teardownFirewall({ v6Policies: { INPUT: 'ACCEPT', FORWARD: 'ACCEPT', OUTPUT: 'ACCEPT' }, sysctls: namespaceDefaults }, exec);
});

const gatewayRun = (args: string[]) =>
  ns.run(
    process.execPath,
    [
      CLI,
      'gateway',
      '--no-defaults',
      '--upstream',
      '192.0.2.53',
      '--audit-log',
      `${dir.path}/audit.jsonl`,
      '--allowlist',
      `${dir.path}/none.txt`,
      ...args,
    ],
    {
      reject: false,
      timeoutMs: 20_000,
    },
  );

t.test('the gateway refuses to start, with a clear message, when the firewall cannot be applied', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown interface', ['--listen', '10.30.0.1', '--sandbox-interface', 'nosuch0'], /--sandbox-interface nosuch0: no such interface/],
    [
      'no way to know the sandbox side',
      ['--listen', '0.0.0.0'],
      /give --sandbox-interface IF, or --listen with the sandbox-facing address/,
    ],
    ['listen address on no interface', ['--listen', '10.99.0.1'], /--listen 10.99.0.1: no interface has this address/],
  ];
  for (const [what, args, message] of cases) {
    const r = await gatewayRun(args);
    t.equal(r.exitCode, 1, what);
    t.match(String(r.stderr), /the firewall could not be applied, refusing to start \(fail closed\)/, `${what}: says it fails closed`);
    t.match(String(r.stderr), message, `${what}: says why`);
  }
  // A real apply failure: a set of the wrong type squats our set's name, so the fresh one cannot be swapped in.
  await exec('ipset', ['create', 'codex-egress-allow', 'hash:net']);
  const r = await gatewayRun(['--listen', '10.30.0.1']);
  t.equal(r.exitCode, 1);
  t.match(String(r.stderr), /refusing to start \(fail closed\):\n\s+ipset restore \(create the sets\) failed: /);
  t.notMatch(String((await exec('ss', ['-ltnu'])).toString()), /:3128|:53 /, 'nothing listens');
  await exec('ipset', ['destroy', 'codex-egress-allow']);
});

t.test('the firewall flags are checked', async (t) => {
  const size = await gatewayRun(['--listen', '10.30.0.1', '--firewall-set-size', '0']);
  t.equal(size.exitCode, 2);
  t.match(String(size.stderr), /--firewall-set-size must be a whole number from 1 to 1000000, not "0"/);
  const name = await gatewayRun(['--listen', '10.30.0.1', '--sandbox-interface', 'eth0; reboot']);
  t.equal(name.exitCode, 1);
  t.match(String(name.stderr), /sandboxInterface: not an interface name/);
  const help = await ns.run(process.execPath, [CLI, 'gateway', '--help'], { reject: false });
  t.match(String(help.stdout), /--sandbox-interface IF/);
  t.match(String(help.stdout), /--firewall-set-size N/);
});

t.test('--no-firewall says so loudly on stderr, in the audit log and in /healthz', async (t) => {
  const gw = await startGatewayIn(ns, dir.path, [
    '--no-firewall',
    '--no-defaults',
    '--listen',
    '127.0.0.1',
    '--upstream',
    '192.0.2.53',
    '--allowlist',
    `${dir.path}/none.txt`,
  ]);
  t.teardown(() => gw.stop());
  t.match(gw.proc.output(), /WARNING: --no-firewall: the kernel does not enforce the allowlist \(development only\)/);
  t.match(await gw.waitForAudit((e) => e.event === 'start'), { firewall: false });
  const h = await ns.run('curl', ['-sS', '--max-time', '3', 'http://127.0.0.1:3128/healthz'], { reject: false });
  t.match(JSON.parse(String(h.stdout)), { firewall: { up: false, disabled: true, warning: /development only/ } });
  t.notMatch(await exec('iptables-save', []), /CODEX-EGRESS/, 'no rules were applied');
});
