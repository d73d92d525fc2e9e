// The tunnel path's GC retention, reproduced in a small process (bench/results/perf7-rounds.md): the
// real handleConnect (proxy/http/connect.ts) behind a trivial front door (the first read is the CONNECT
// line), names resolved from memory to 127.0.0.1, no audit, closed client sockets dropping their
// listeners as the proxy's do, and `ballastMb` of small long-lived objects (a real program's heap; without
// it the retention comes and goes at random). Prints its port. Run it under `node --trace-gc-nvp`, load it
// with bench/loadgen.ts connect mode, and summarise the log with bench/gc-nvp.ts.
// Usage: node --trace-gc-nvp dist/bench/retention.js '{"ballastMb":20}' > /tmp/gc.txt
import net from 'node:net';
import { handleConnect } from '../proxy/http/connect.js';
import { dropListenersOnClose } from '../proxy/http/closed.js';
import { Registry } from '../proxy/http/registry.js';
import { Resolver } from '../proxy/dns/resolver.js';
import { DEFAULT_LIMITS } from '../proxy/config.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { RCODE } from '../proxy/dns/wire.js';

const args = JSON.parse(process.argv[2] ?? '{}') as { ballastMb?: number; name?: string; port?: number };
const ballast: Array<{ a: number; b: string }> = [];
for (let i = 0; i < (args.ballastMb ?? 20) * 16 * 1024; i++) ballast.push({ a: i, b: String(i) });
(globalThis as { ballast?: unknown }).ballast = ballast;

const merged = mergeSources({ defaults: false, flags: [`${args.name ?? 'conn.bench.example'}:${args.port ?? 24443}`] });
if (!merged.ok) throw new Error(merged.errors.join('; '));
const resolver = new Resolver(
  { resolveA: async () => ({ rcode: RCODE.NOERROR, ips: ['127.0.0.1'], ttl: 3600, upstream: 'memory' }) },
  { guard: (ip: string) => ip === '127.0.0.1' },
);
const deps = {
  allowlist: () => merged.allowlist,
  resolver,
  registry: new Registry(),
  audit: { write: () => undefined, close: async () => undefined },
  limits: DEFAULT_LIMITS,
  toHttp: () => undefined,
};
const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  dropListenersOnClose(socket);
  socket.on('error', () => socket.destroy());
  socket.once('data', (chunk: Buffer) => {
    const end = chunk.indexOf('\r\n\r\n');
    const line = chunk.toString('latin1', 0, chunk.indexOf(13));
    // Later bytes wait in the socket until the tunnel reads them (as the front door leaves it).
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    void handleConnect(deps, line.split(' ')[1] ?? '', socket, chunk.subarray(end + 4));
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`));
