// ATTACK6 finding 3 (low, defence in depth: needs a sandbox able to forge sources, e.g. CAP_NET_RAW; the
// project's sandbox drops every capability): the INPUT rules accepted the gateway's DNS, proxy and pool
// ports from any source on the sandbox interface. Since attack5 the replies to a forged source are
// dropped on the way out, but the forged packets still reached the gateway's services: a DNS query from
// a LAN or internet address was resolved and audited under that address (the audit log names a host that
// never sent anything), and forged-source packets made the gateway answer at all. Now only the sandbox
// interface's own networks are accepted as sources (firewall/rules.ts `-s`, read from the interface by
// firewall/index.ts); the rest is dropped (and counted) by in-drop.
// Namespaces as in test/attack5-spoof.test.ts; every address is a documentation or test address inside them.
import t from 'tap';
import { dropTotal, type RunningGateway } from './harness/world.js';
import { closeTopology, dig, forgedDnsQuery, startForgingTopology, GATEWAY, LAN, SANDBOX, type Topology } from './harness/topology.js';
import { networksOf } from '../firewall/apply.js';
import { v4Rules, type FirewallPlan } from '../firewall/rules.js';

const ATTACKER = '203.0.113.98';
const PORT = 40054;

let topo: Topology;
let gw: RunningGateway | undefined;

t.before(async () => {
  ({ topo, gw } = await startForgingTopology(['allowed.test'], [ATTACKER, LAN]));
});
t.teardown(() => closeTopology(topo, [gw]));

const inDrops = () => dropTotal(gw!, 'in-drop');

const forgedQuery = (from: string, name: string) => forgedDnsQuery(topo, from, PORT, name);

t.test('held: the sandbox at its own address is served', async (t) => {
  t.equal((await dig(topo.sandbox, GATEWAY, 'allowed.test')).status, 'NOERROR');
  await t.resolves(
    gw!.waitForAudit((e) => e.event === 'dns' && e.client === SANDBOX && e.name === 'allowed.test'),
    'audited under its address',
  );
});

for (const [what, from] of [
  ['an internet address', ATTACKER],
  ['a LAN address', LAN],
] as const) {
  t.test(`a DNS query forged from ${what} never reaches the resolver`, async (t) => {
    const before = await inDrops();
    await forgedQuery(from, `forged-${from.replace(/\./g, '-')}.allowed.test`);
    await t.resolves(
      gw!.waitForAudit(
        (e) => e.event === 'firewall' && e.action === 'drop' && e.rule === 'in-drop' && (e.total_packets as number) > before,
        8000,
      ),
      'dropped at the kernel (in-drop)',
    );
    t.notOk(
      (await gw!.settledAudit()).some((e) => e.event === 'dns' && e.client === from),
      `no query audited under ${from}`,
    );
  });
}

t.test('a TCP connection to the proxy from a forged source is dropped before the gateway answers', async (t) => {
  const before = await inDrops();
  const script = `const s = require('node:net').connect({ host: ${JSON.stringify(GATEWAY)}, port: 3128, localAddress: ${JSON.stringify(ATTACKER)} });
    s.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });
    s.on('connect', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const r = await topo.sandbox.run(process.execPath, ['-e', script], { reject: false });
  t.equal(String(r.stdout).trim(), 'timeout', 'no handshake');
  await t.resolves(
    gw!.waitForAudit(
      (e) => e.event === 'firewall' && e.action === 'drop' && e.rule === 'in-drop' && (e.total_packets as number) > before,
      8000,
    ),
    'the SYN is dropped on the way in (in-drop), not answered',
  );
});

t.test('rules: every accept from the sandbox interface names its networks (pool included); networksOf', async (t) => {
  const plan: FirewallPlan = {
    sandboxInterface: 'eth1',
    listen: '10.0.0.1',
    dnsPort: 53,
    proxyPort: 3128,
    upstreams: [],
    setSize: 10,
    minTtl: 60,
    transparentPool: '10.0.0.128/25',
    sandboxSources: ['10.0.0.0/24'],
  };
  const fromSandbox = v4Rules(plan).INPUT.filter((r) => r.includes('-i eth1'));
  t.equal(fromSandbox.length, 5);
  for (const r of fromSandbox) t.match(r, /^-s 10\.0\.0\.0\/24 /, r);
  const out = [
    '2: eth1    inet 10.10.0.1/24 brd 10.10.0.255 scope global eth1\\       valid_lft forever preferred_lft forever',
    '2: eth1    inet 172.30.7.9/16 scope global secondary eth1',
    '3: tun0    inet 10.8.0.1 peer 10.8.0.2/32 scope global tun0',
    '4: x    inet 192.0.2.7/32 scope global x',
  ].join('\n');
  t.same(networksOf(out), ['10.10.0.0/24', '172.30.0.0/16', '10.8.0.2/32', '192.0.2.7/32']);
  t.same(networksOf(''), []);
});
