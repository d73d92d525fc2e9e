// The proxy's accept queue: hundreds of clients connecting at once must not overflow it (Node's default
// backlog, 511, drops SYNs past that and each drop costs the client a 1 s retransmit). Read from the
// kernel: for a listening socket `ss -lnt` shows the backlog as Send-Q.
import t from 'tap';
import { LISTEN_BACKLOG } from '../proxy/http/proxy.js';
import { startCore, type Core } from './harness/core.js';

let core: Core;
t.before(async () => {
  core = await startCore();
});
t.teardown(() => core?.close());

t.test('the proxy listens with a deep backlog (up to net.core.somaxconn)', async (t) => {
  const somaxconn = Number((await core.ns.run('sysctl', ['-n', 'net.core.somaxconn'])).stdout.trim());
  const out = (await core.ns.run('ss', ['-Hlnt', 'sport = :3128'])).stdout.trim();
  const backlog = Number(out.split(/\s+/)[2]);
  t.equal(backlog, Math.min(LISTEN_BACKLOG, somaxconn), `Send-Q of the listening socket: ${out}`);
  t.ok(backlog > 511, `deeper than Node's default of 511 (somaxconn here ${somaxconn})`);
});
