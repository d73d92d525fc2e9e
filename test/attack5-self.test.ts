// ATTACK5: an allowed name whose DNS answer is one of the gateway's own addresses. The address guard asks
// only "public?", and the gateway's internet-side address may well be public (here a documentation
// address, public to the guard); the kernel layer accepts everything the gateway sends over loopback,
// which is how a connection to its own address travels. So the proxy reached services of the gateway's
// own host/namespace that the sandbox cannot reach directly (in-drop), on any port a rule names. Fix: the
// gateway's resolver guard also refuses the gateway's own addresses (proxy/address.ts notOwnAddress, wired
// in proxy/gateway.ts with its interfaces' addresses and the transparent pool). Red before the fix: 2.
import t from 'tap';
import type { RunningGateway } from './harness/world.js';
import { startGatewayIn } from './harness/world.js';
import {
  curl,
  startTopology,
  tcpProbe,
  writeAllowlist,
  GATEWAY,
  GATEWAY_OUTSIDE,
  GATEWAY_SERVICE_PORT,
  closeTopology,
  topologyGatewayArgs,
  type Topology,
} from './harness/topology.js';

let topo: Topology;
let gw: RunningGateway | undefined;

t.before(async () => {
  topo = await startTopology();
  const allowlistPath = writeAllowlist(topo.dir, ['allowed.test', `self.test:${GATEWAY_SERVICE_PORT}/tcp`, 'self.test']);
  gw = await startGatewayIn(topo.gateway, topo.dir, topologyGatewayArgs(allowlistPath));
});
t.teardown(() => closeTopology(topo, [gw]));

t.test('held: the sandbox cannot reach the service on the gateway address directly', async (t) => {
  t.equal(await tcpProbe(topo.sandbox, GATEWAY_OUTSIDE, GATEWAY_SERVICE_PORT), 'timeout');
});

t.test("CONNECT to an allowed name that resolves to the gateway's own address is refused", async (t) => {
  const script = `const s = require('node:net').connect(3128, ${JSON.stringify(GATEWAY)});
    let out = '';
    s.on('connect', () => s.write('CONNECT self.test:${GATEWAY_SERVICE_PORT} HTTP/1.1\\r\\nHost: self.test:${GATEWAY_SERVICE_PORT}\\r\\n\\r\\n'));
    s.on('data', (d) => { out += d; });
    setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 2500);`;
  const r = await topo.sandbox.run(process.execPath, ['-e', script], { reject: false });
  const out = JSON.parse(String(r.stdout).trim() || '""') as string;
  t.notMatch(out, /BANNER/, `the gateway's own service is not reached (${JSON.stringify(out.slice(0, 120))})`);
  t.match(out, /^HTTP\/1\.1 403/, 'refused');
  const web = await curl(topo.sandbox, ['-x', `http://${GATEWAY}:3128`, 'http://self.test/'], 2);
  t.not(web.code, 200, 'plain HTTP to it is refused too');
});
