// The fail-closed proof: the real gateway with its real firewall in a three-namespace network
// (sandbox → gateway → internet, see test/harness/topology.ts), probed by real clients (curl, dig,
// node sockets, ping) run inside the sandbox. Every probe that the firewall must block is first shown
// to pass while no firewall rules exist, so the firewall, not a missing route, is what blocks it.
import t from 'tap';
import type { AuditLine, RunningGateway } from './harness/world.js';
import { dropTotal as dropTotalOf, startGatewayIn } from './harness/world.js';
import {
  curl,
  dig,
  ping,
  setMembers,
  startTopology,
  tcpProbe,
  waitIPv6Ready,
  writeAllowlist,
  closeTopology,
  topologyGatewayArgs,
  DENIED_WEB,
  GATEWAY,
  GATEWAY_OUTSIDE,
  GATEWAY_SERVICE_PORT,
  LAN,
  METADATA,
  NEW_WEB,
  PROXY,
  UDP_PORT,
  UPSTREAM,
  WEB,
  WEB6,
  type Topology,
} from './harness/topology.js';

const RULES = ['allowed.test', 'rebind.test', 'full1.test', 'full2.test'];

let topo: Topology;
let gw: RunningGateway | undefined;
let allowlistPath: string;

t.before(async () => {
  topo = await startTopology();
  allowlistPath = writeAllowlist(topo.dir, RULES);
});
t.teardown(() => closeTopology(topo, [gw]));

const gatewayArgs = (...extra: string[]) => topologyGatewayArgs(allowlistPath, ...extra);
const viaProxy = (...args: string[]) => curl(topo.sandbox, ['-x', PROXY, '--cacert', topo.cert, ...args]);
const audited = (pred: (e: AuditLine) => boolean, timeoutMs = 5000) => gw!.waitForAudit(pred, timeoutMs);
const fwEvent = (action: string) => (e: AuditLine) => e.event === 'firewall' && e.action === action;

/** The last reported total of a drop rule's counter (0 before any event). */
const dropTotal = (rule: string) => dropTotalOf(gw!, rule);
/** Wait for the `firewall` audit event saying that rule dropped more packets than `before`. */
const droppedBy = (rule: string, before: number) =>
  audited((e) => fwEvent('drop')(e) && e.rule === rule && (e.total_packets as number) > before, 8000);

const iptablesSave = async (ns = topo.gateway, cmd = 'iptables-save') =>
  String((await ns.run(cmd, ['-t', 'filter'])).stdout)
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');

/** Direct probes from the sandbox (no proxy): each must pass without rules and fail with them. */
const directProbes = {
  'TCP to the allowed web server (node socket)': async () => (await tcpProbe(topo.sandbox, WEB, 443)) === 'connected',
  'DNS to the fake upstream (dig)': async () => (await dig(topo.sandbox, UPSTREAM, 'direct-probe.test')).status === 'NXDOMAIN',
  'UDP to the allowed web server (dig on 5353)': async () =>
    (await dig(topo.sandbox, WEB, 'allowed.test', ['-p', String(UDP_PORT)])).status === 'NOERROR',
  'ICMP to the allowed web server (ping)': () => ping(topo.sandbox, WEB),
  'HTTP to the LAN host (curl)': async () => (await curl(topo.sandbox, [`http://${LAN}/`], 2)).code === 200,
  'HTTP to the metadata server (curl)': async () => (await curl(topo.sandbox, [`http://${METADATA}/latest/`], 2)).code === 200,
  "TCP to the gateway's other address (node socket)": async () =>
    (await tcpProbe(topo.sandbox, GATEWAY_OUTSIDE, GATEWAY_SERVICE_PORT)) === 'connected',
  'IPv6 HTTP (curl)': async () => (await curl(topo.sandbox, ['-6', `http://[${WEB6}]/`], 2)).code === 200,
  'IPv6 ICMP (ping -6)': () => ping(topo.sandbox, WEB6),
};
/** Probes from a process inside the gateway's namespace (what a proxy bug could do): OUTPUT must stop them. */
const gatewayLocalProbes = {
  'metadata server': async () => (await curl(topo.gateway, [`http://${METADATA}/`], 2)).code === 200,
  'LAN host': async () => (await curl(topo.gateway, [`http://${LAN}/`], 2)).code === 200,
  'denied web server (not in the allow set)': async () => (await tcpProbe(topo.gateway, DENIED_WEB, 443)) === 'connected',
};

t.test('baseline: with no firewall rules the sandbox reaches everything directly (routing works)', async (t) => {
  t.notMatch(await iptablesSave(), /CODEX-EGRESS/, 'no rules yet');
  for (const [name, probe] of Object.entries(directProbes)) t.equal(await probe(), true, `${name}: passes without the firewall`);
  for (const [name, probe] of Object.entries(gatewayLocalProbes))
    t.equal(await probe(), true, `from the gateway namespace, ${name}: passes without the firewall`);
  t.ok(
    topo.world.queries().some((q) => q.name === 'direct-probe.test'),
    'the direct DNS probe reached the upstream',
  );
});

t.test('the gateway starts with the firewall applied and verified, and says so', async (t) => {
  const started = Date.now();
  gw = await startGatewayIn(topo.gateway, topo.dir, gatewayArgs());
  t.comment(`gateway up with its firewall in ${Date.now() - started} ms`);
  t.match(await audited(fwEvent('applied')), {
    v: 1,
    interface: topo.sandboxIf,
    ports: [80, 443],
    set: 'codex-egress-allow',
    set_size: 65536,
    upstreams: [`${UPSTREAM}:53`],
    ipv6_sysctl: true,
  });
  t.match(await audited((e) => e.event === 'start'), { firewall: true });
  const h = await curl(topo.sandbox, [`${PROXY}/healthz`]);
  t.equal(h.code, 200);
  t.match(JSON.parse(h.body), {
    healthy: true,
    firewall: {
      up: true,
      interface: topo.sandboxIf,
      ports: [80, 443],
      ipv6: { policy: 'DROP', sysctl_disabled: true },
      drops: { 'forward-drop': { packets: 0 } },
    },
  });
  const save = await iptablesSave();
  for (const c of ['CODEX-EGRESS-IN', 'CODEX-EGRESS-FWD', 'CODEX-EGRESS-OUT']) t.match(save, new RegExp(`^:${c} `, 'm'), `${c} exists`);
});

t.test('allowed HTTPS through the proxy works; the answer put the address in the allow set (TTL clamped up)', async (t) => {
  const r = await viaProxy('https://allowed.test/hello');
  t.equal(r.code, 200, r.stderr);
  t.match(r.body, `hello from ${WEB}:443 host=allowed.test path=/hello`);
  t.match(await audited((e) => e.event === 'connect' && e.host === 'allowed.test'), { decision: 'allow', ip: WEB, port: 443 });
  t.match(await audited((e) => e.event === 'tunnel_close' && e.host === 'allowed.test'), { ip: WEB });
  const d = await dig(topo.sandbox, GATEWAY, 'allowed.test');
  t.equal(d.status, 'NOERROR');
  t.same(d.answers, [WEB]);
  t.match(await audited((e) => e.event === 'dns' && e.name === 'allowed.test'), { decision: 'allow', answers: [WEB] });
  const timeout = (await setMembers(topo.gateway, 'codex-egress-allow')).get(WEB);
  t.ok(
    timeout !== undefined && timeout > 75 && timeout <= 90,
    `set entry timeout ${timeout}: the 5 s TTL was clamped to 60 s, told to the kernel with 1.5× headroom`,
  );
});

t.test('a denied name: NXDOMAIN and 403, and the upstream never saw the query', async (t) => {
  const d = await dig(topo.sandbox, GATEWAY, 'denied.test');
  t.equal(d.status, 'NXDOMAIN');
  t.match(await audited((e) => e.event === 'dns' && e.name === 'denied.test'), {
    decision: 'deny',
    reason: 'not-allowlisted',
    rcode: 'NXDOMAIN',
  });
  const r = await viaProxy('-D', '-', 'https://denied.test/');
  t.equal(r.connect, 403);
  t.match(r.body, /x-codex-egress-deny: not-allowlisted/i);
  t.match(await audited((e) => e.event === 'connect' && e.host === 'denied.test'), {
    decision: 'deny',
    reason: 'not-allowlisted',
    status: 403,
  });
  t.notOk(
    topo.world.queries().some((q) => q.name === 'denied.test'),
    'the upstream never saw denied.test',
  );
  t.notOk((await setMembers(topo.gateway, 'codex-egress-allow')).has(DENIED_WEB), 'not in the allow set');
});

t.test('direct TCP to an allowed address, without the proxy, is blocked', async (t) => {
  const before = await dropTotal('forward-drop');
  t.equal(await tcpProbe(topo.sandbox, WEB, 443), 'timeout', 'the SYN is dropped');
  t.match(await droppedBy('forward-drop', before), { family: 'ipv4', chain: 'FORWARD', target: 'DROP' });
});

t.test('direct DNS to the upstream is blocked, and the upstream never sees it', async (t) => {
  const before = await dropTotal('forward-drop');
  const seen = topo.world.queries().length;
  t.equal((await dig(topo.sandbox, UPSTREAM, 'direct-probe-2.test')).status, 'TIMEOUT');
  t.equal(topo.world.queries().length, seen, 'no query reached the upstream');
  await droppedBy('forward-drop', before);
});

t.test('UDP and ICMP out are blocked', async (t) => {
  let before = await dropTotal('forward-drop');
  t.equal((await dig(topo.sandbox, WEB, 'allowed.test', ['-p', String(UDP_PORT)])).status, 'TIMEOUT', 'UDP');
  await droppedBy('forward-drop', before);
  before = await dropTotal('forward-drop');
  t.equal(await ping(topo.sandbox, WEB), false, 'ICMP');
  await droppedBy('forward-drop', before);
  before = await dropTotal('in-drop');
  t.equal(await ping(topo.sandbox, GATEWAY), false, 'ICMP to the gateway itself');
  await droppedBy('in-drop', before);
});

t.test('IPv6 is dead: ip6tables DROP everywhere and IPv6 disabled in the gateway namespace', async (t) => {
  t.equal((await curl(topo.sandbox, ['-6', `http://[${WEB6}]/`], 2)).code, 0, 'IPv6 HTTP');
  t.equal(await ping(topo.sandbox, WEB6), false, 'IPv6 ping');
  t.equal(await ping(topo.sandbox, 'fd10::1'), false, "IPv6 ping to the gateway's own address");
  const save6 = await iptablesSave(topo.gateway, 'ip6tables-save');
  for (const chain of ['INPUT', 'FORWARD', 'OUTPUT']) t.match(save6, new RegExp(`^:${chain} DROP`, 'm'), `ip6tables ${chain} policy DROP`);
  t.match(save6, /-A CODEX-EGRESS-FWD -m comment --comment "codex-egress:forward6-drop" -j DROP/);
  t.equal(String((await topo.gateway.run('sysctl', ['-n', 'net.ipv6.conf.all.disable_ipv6'])).stdout).trim(), '1');
  t.match(gw!.audit().find(fwEvent('applied')), { ipv6_sysctl: true }, 'audited at start');

  // The second layer alone, as where /proc/sys is read-only: IPv6 back on in the gateway namespace,
  // addresses and routes restored, and ip6tables still drops everything (and counts it).
  const g = topo.gateway;
  t.teardown(() => g.run('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']));
  await g.run('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.all.forwarding=1']);
  await g.run('sysctl', ['-q', '-w', `net.ipv6.conf.${topo.sandboxIf}.disable_ipv6=0`, `net.ipv6.conf.${topo.outsideIf}.disable_ipv6=0`]);
  await g.run('ip', ['-6', 'addr', 'replace', 'fd10::1/64', 'dev', topo.sandboxIf, 'nodad']);
  await g.run('ip', ['-6', 'addr', 'replace', 'fd20::1/64', 'dev', topo.outsideIf, 'nodad']);
  await g.run('ip', ['-6', 'route', 'replace', 'default', 'via', 'fd20::2']);
  await waitIPv6Ready(g);
  const before = await dropTotal('in6-drop');
  t.equal(await ping(topo.sandbox, WEB6), false, 'IPv6 ping through the gateway, IPv6 enabled: still dropped');
  t.equal(await ping(topo.sandbox, 'fd10::1'), false, 'IPv6 ping to the gateway, IPv6 enabled: still dropped');
  t.equal((await curl(topo.sandbox, ['-6', `http://[${WEB6}]/`], 2)).code, 0);
  // Even neighbour discovery for the gateway's address is dropped, so nothing reaches FORWARD.
  t.match(await droppedBy('in6-drop', before), { family: 'ipv6', chain: 'INPUT', target: 'DROP' });
});

t.test("LAN, metadata and the gateway's other addresses are unreachable", async (t) => {
  let before = await dropTotal('forward-drop');
  t.equal((await curl(topo.sandbox, [`http://${LAN}/`], 2)).code, 0, 'LAN directly');
  t.equal((await curl(topo.sandbox, [`http://${METADATA}/latest/`], 2)).code, 0, 'metadata directly');
  await droppedBy('forward-drop', before);
  before = await dropTotal('in-drop');
  t.equal(await tcpProbe(topo.sandbox, GATEWAY_OUTSIDE, GATEWAY_SERVICE_PORT), 'timeout', "a service on the gateway's other address");
  t.equal(await tcpProbe(topo.sandbox, GATEWAY_OUTSIDE, 3128), 'timeout', "the proxy port on the gateway's other address");
  t.equal(await tcpProbe(topo.sandbox, GATEWAY, GATEWAY_SERVICE_PORT), 'timeout', 'another port on the sandbox-facing address');
  await droppedBy('in-drop', before);
  for (const url of [`http://${METADATA}/latest/`, `http://${LAN}/`]) {
    const r = await viaProxy('-D', '-', url);
    t.equal(r.code, 403, `${url} through the proxy`);
    t.match(r.body, /x-codex-egress-deny: ip-literal/i);
  }
  t.match(await audited((e) => e.event === 'http' && e.host === METADATA), { decision: 'deny', reason: 'ip-literal' });
});

t.test('in the gateway namespace, OUTPUT rejects forbidden ranges even when they land in the allow set', async (t) => {
  for (const [name, probe] of Object.entries(gatewayLocalProbes)) t.equal(await probe(), false, `${name}: blocked`);
  t.equal(await tcpProbe(topo.gateway, WEB, 443), 'connected', 'an address in the allow set, on an allowed port, is reachable');
  t.not(await tcpProbe(topo.gateway, WEB, 8443), 'connected', 'the same address on a port no rule names is not');
  await topo.gateway.run('ipset', ['add', 'codex-egress-allow', METADATA, 'timeout', '60', '-exist']);
  await topo.gateway.run('ipset', ['add', 'codex-egress-allow', LAN, 'timeout', '60', '-exist']);
  const before = await dropTotal('out-forbidden-169.254.0.0/16');
  t.equal(await gatewayLocalProbes['metadata server'](), false, 'metadata still rejected with its address in the set');
  t.equal(await gatewayLocalProbes['LAN host'](), false, 'LAN still rejected with its address in the set');
  t.match(await droppedBy('out-forbidden-169.254.0.0/16', before), { chain: 'OUTPUT', target: 'REJECT' });
  await droppedBy('out-forbidden-10.0.0.0/8', 0);
  await droppedBy('out-reject', 0);
  await topo.gateway.run('ipset', ['del', 'codex-egress-allow', METADATA]);
  await topo.gateway.run('ipset', ['del', 'codex-egress-allow', LAN]);
  const h = JSON.parse((await curl(topo.sandbox, [`${PROXY}/healthz`])).body);
  t.ok(h.firewall.drops['out-forbidden-169.254.0.0/16'].packets > 0, '/healthz reports the counter');
  t.ok(h.firewall.drops['forward-drop'].packets > 0);
});

t.test('a rebinding answer (allowed name, private address) is refused and never enters the allow set', async (t) => {
  const d = await dig(topo.sandbox, GATEWAY, 'rebind.test');
  t.equal(d.status, 'REFUSED');
  t.match(await audited((e) => e.event === 'dns' && e.name === 'rebind.test'), {
    decision: 'deny',
    reason: 'private-address',
    answers: [LAN],
  });
  const r = await viaProxy('-D', '-', 'http://rebind.test/');
  t.equal(r.code, 403);
  t.match(r.body, /x-codex-egress-deny: private-address/i);
  t.match(await audited((e) => e.event === 'http' && e.host === 'rebind.test'), { decision: 'deny', reason: 'private-address' });
  t.notOk((await setMembers(topo.gateway, 'codex-egress-allow')).has(LAN));
});

t.test('an allowlist edit applies live: new names and ports open, removed names are flushed from the set', async (t) => {
  t.equal((await viaProxy('https://new.test/')).connect, 403, 'new.test is not allowed yet');
  writeAllowlist(topo.dir, [...RULES, 'new.test', 'allowed.test:8443']);
  await audited((e) => e.event === 'reload' && e.ok === true && (e.added as string[]).includes('new.test'));
  t.match(await audited((e) => fwEvent('reload')(e) && (e.ports as number[]).includes(8443)), { ports: [80, 443, 8443], flushed: [] });
  const r = await viaProxy('https://new.test/');
  t.equal(r.code, 200, r.stderr);
  t.match(r.body, `hello from ${NEW_WEB}:443`);
  const p = await viaProxy('https://allowed.test:8443/');
  t.equal(p.code, 200, `a port opened by the edit: ${p.stderr}`);
  t.match(p.body, `hello from ${WEB}:8443`);
  t.ok((await setMembers(topo.gateway, 'codex-egress-ports')).has('8443'), 'the kernel port set follows');

  writeAllowlist(topo.dir, ['rebind.test', 'full1.test', 'full2.test', 'new.test']);
  await audited((e) => e.event === 'reload' && e.ok === true && (e.removed as string[]).includes('allowed.test'));
  t.match(await audited((e) => fwEvent('reload')(e) && (e.flushed as string[]).includes(WEB)), { ports: [80, 443] });
  const members = await setMembers(topo.gateway, 'codex-egress-allow');
  t.notOk(members.has(WEB), "allowed.test's address is gone from the set");
  t.ok(members.has(NEW_WEB), "new.test's address stays");
  t.notOk((await setMembers(topo.gateway, 'codex-egress-ports')).has('8443'));
  t.equal((await viaProxy('https://allowed.test/')).connect, 403, 'allowed.test is refused now');
  writeAllowlist(topo.dir, RULES);
  await audited((e) => e.event === 'reload' && e.ok === true && (e.added as string[]).includes('allowed.test'));
});

let rulesBefore = '';
t.test('killing the gateway (SIGKILL) leaves the sandbox no way out', async (t) => {
  rulesBefore = (await iptablesSave()) + (await iptablesSave(topo.gateway, 'ip6tables-save'));
  gw!.proc.child.kill('SIGKILL');
  await gw!.proc.child;
  t.ok(gw!.proc.exited);
  t.equal((await iptablesSave()) + (await iptablesSave(topo.gateway, 'ip6tables-save')), rulesBefore, 'the rules stay in the kernel');
  t.not((await viaProxy('https://allowed.test/')).code, 200, 'no proxy');
  t.equal((await dig(topo.sandbox, GATEWAY, 'allowed.test')).status, 'TIMEOUT', 'no DNS');
  const results = await Promise.all(Object.values(directProbes).map((probe) => probe()));
  Object.keys(directProbes).forEach((name, i) => t.equal(results[i], false, `${name}: still blocked`));
});

t.test('restarting restores service with the rules re-applied exactly once', async (t) => {
  gw = await startGatewayIn(topo.gateway, topo.dir, gatewayArgs('--firewall-set-size', '2'));
  await audited(fwEvent('applied'));
  const after = (await iptablesSave()) + (await iptablesSave(topo.gateway, 'ip6tables-save'));
  t.equal(after, rulesBefore, 'the same rules, each once: no duplicate jump, chain or rule');
  for (const chain of ['INPUT', 'FORWARD', 'OUTPUT']) {
    t.equal(
      after.split('\n').filter((l) => new RegExp(`^-A ${chain} -j CODEX-EGRESS-`).test(l)).length,
      2,
      `one jump from ${chain} (v4 and v6)`,
    );
  }
  t.equal((await setMembers(topo.gateway, 'codex-egress-allow')).size, 0, 'the allow set starts empty');
  const r = await viaProxy('https://allowed.test/');
  t.equal(r.code, 200, r.stderr);
  t.equal((await setMembers(topo.gateway, 'codex-egress-allow')).has(WEB), true);
});

t.test('a full allow set refuses new answers (SERVFAIL) instead of failing open', async (t) => {
  t.equal((await dig(topo.sandbox, GATEWAY, 'full1.test')).status, 'NOERROR', 'fits (2 of 2)');
  const d = await dig(topo.sandbox, GATEWAY, 'full2.test');
  t.equal(d.status, 'SERVFAIL', 'does not fit');
  t.match(await audited((e) => e.event === 'dns' && e.name === 'full2.test'), {
    decision: 'deny',
    reason: 'firewall-failed',
    rcode: 'SERVFAIL',
  });
  t.match(await audited(fwEvent('set-full')), { name: 'full2.test', ips: ['203.0.113.42'], set_size: 2 });
  t.notOk((await setMembers(topo.gateway, 'codex-egress-allow')).has('203.0.113.42'));
  t.equal((await dig(topo.sandbox, GATEWAY, 'allowed.test')).status, 'NOERROR', 'addresses already in the set still answer');
});

t.test('a change to the rules by anyone else makes /healthz unhealthy until it is undone', async (t) => {
  const healthz = async () => {
    const r = await curl(topo.sandbox, [`${PROXY}/healthz`]);
    return { code: r.code, body: JSON.parse(r.body) as { firewall: { up: boolean; problem?: string } } };
  };
  const until = async (code: number) => {
    for (let i = 0; i < 40; i++) {
      const h = await healthz();
      if (h.code === code) return h;
      await new Promise((r) => setTimeout(r, 200));
    }
    return healthz();
  };
  t.equal((await healthz()).code, 200);
  await topo.gateway.run('iptables', ['-I', 'CODEX-EGRESS-OUT', '1', '-d', '10.0.0.0/8', '-j', 'ACCEPT']);
  const bad = await until(503);
  t.equal(bad.code, 503);
  t.match(bad.body.firewall, {
    up: false,
    problem: /changed by someone else: iptables CODEX-EGRESS-OUT differs: missing \[\] unexpected \[-d 10.0.0.0\/8 -j ACCEPT\]/,
  });
  await topo.gateway.run('iptables', ['-D', 'CODEX-EGRESS-OUT', '-d', '10.0.0.0/8', '-j', 'ACCEPT']);
  t.equal((await until(200)).code, 200, 'healthy again once undone');
});

t.test('a graceful stop keeps the rules (the namespace stays closed)', async (t) => {
  await gw!.stop('SIGTERM');
  t.equal(gw!.proc.child.exitCode, 0);
  t.match(gw!.audit().find(fwEvent('stop')), { rules_kept: true });
  t.match(await iptablesSave(), /-A FORWARD -j CODEX-EGRESS-FWD/);
  t.equal(await directProbes['TCP to the allowed web server (node socket)'](), false);
  gw = undefined;
});
