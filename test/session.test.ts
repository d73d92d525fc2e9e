// A session longer than the allow set's timeouts, through the real gateway and its real kernel firewall
// (three namespaces, test/harness/topology.ts): a client in the sandbox asks DNS for allowed names and
// opens a new tunnel to each every few seconds; the gateway's own dial goes through the allow set
// (OUTPUT rejects addresses not in it), so a kernel entry that expired while the gateway believed it
// live shows as a 502. Names: a 5 s TTL (served from the resolver's cache between upstream fetches), a
// 20 s TTL (both under the 60 s floor) and a 90 s TTL (above it). Runs about 110 s.
import t from 'tap';
import { startGatewayIn, type RunningGateway } from './harness/world.js';
import {
  curl,
  dig,
  closeTopology,
  setMembers,
  startTopology,
  topologyGatewayArgs,
  writeAllowlist,
  GATEWAY,
  LONG_WEB,
  SHORT_WEB,
  WEB,
  type Topology,
} from './harness/topology.js';

const NAMES = { 'allowed.test': WEB, 'short.test': SHORT_WEB, 'long.test': LONG_WEB } as const;
const SESSION_MS = Number(process.env.SESSION_TEST_MS ?? 110_000);
const EVERY_MS = 3_000;

let topo: Topology;
let gw: RunningGateway | undefined;
t.before(async () => {
  topo = await startTopology();
});
t.teardown(() => closeTopology(topo, [gw]));

t.test(
  `a ${Math.round(SESSION_MS / 1000)} s session: every new connection to an allowed name succeeds, past every TTL and the set's floor`,
  async (t) => {
    const allowlist = writeAllowlist(topo.dir, Object.keys(NAMES));
    gw = await startGatewayIn(topo.gateway, topo.dir, topologyGatewayArgs(allowlist));
    const failures: string[] = [];
    let attempts = 0;
    const start = Date.now();
    // Bounded: at most SESSION_MS / EVERY_MS rounds, each of them bounded by curl's and dig's own limits.
    for (let round = 0; Date.now() - start < SESSION_MS && round < SESSION_MS / EVERY_MS + 1; round++) {
      const roundStart = Date.now();
      await Promise.all(
        Object.entries(NAMES).map(async ([name, ip]) => {
          attempts++;
          const at = `+${Math.round((Date.now() - start) / 1000)} s ${name}`;
          const d = await dig(topo.sandbox, GATEWAY, name);
          if (d.status !== 'NOERROR' || d.answers[0] !== ip) failures.push(`${at}: DNS ${d.status} ${d.answers.join(',')}`);
          const r = await curl(topo.sandbox, ['-x', `http://${GATEWAY}:3128`, '--cacert', topo.cert, `https://${name}/s`]);
          if (r.code !== 200) failures.push(`${at}: CONNECT ${r.connect}, HTTP ${r.code} ${r.stderr.trim()}`);
        }),
      );
      await new Promise((r) => setTimeout(r, Math.max(0, EVERY_MS - (Date.now() - roundStart))));
    }
    t.ok(Date.now() - start >= Math.min(SESSION_MS, 95_000) || SESSION_MS < 95_000, 'the session outlived the 60 s floor and the 90 s TTL');
    t.same(failures, [], `${attempts} connections, none failed`);
    const rejects = (await gw.settledAudit()).filter((e) => e.event === 'firewall' && e.action === 'drop' && e.rule === 'out-reject');
    t.same(rejects, [], "the gateway's own dial was never rejected by its OUTPUT chain");
    const members = await setMembers(topo.gateway, 'codex-egress-allow');
    for (const ip of Object.values(NAMES))
      t.ok((members.get(ip) ?? 0) > 0, `${ip} is still in the kernel's allow set (${members.get(ip)} s left)`);
  },
);
