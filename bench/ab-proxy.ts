// One side of bench/ab.ts: the proxy of the build at ROOT (its dist/), started in this process as the
// gateway wires it (pino audit log to a file, the resolver with its cache), on 127.0.0.1. Names resolve
// to 127.0.0.1 from memory and the guard admits exactly that address. Prints its port, then serves.
// bench/ab.ts starts it with the gateway's Node flags (proxy/runtime.ts).
// Usage: node dist/bench/ab-proxy.js '{"root":"/path/to/checkout","name":"conn.bench.example","log":"/tmp/x.jsonl"}'
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const args = JSON.parse(process.argv[2] ?? '{}') as { root: string; name: string; log: string };
const mod = async (p: string) => import(pathToFileURL(join(args.root, 'dist', p)).href);

const { startProxy } = await mod('proxy/http/proxy.js');
const { Resolver } = await mod('proxy/dns/resolver.js');
const { createAudit } = await mod('proxy/audit.js');
const { DEFAULT_LIMITS } = await mod('proxy/config.js');
const { mergeSources } = await mod('proxy/policy/allowlist.js');
const { RCODE } = await mod('proxy/dns/wire.js');

const merged = mergeSources({ defaults: false, flags: [`${args.name}:24443`, `${args.name}:24480`] });
if (!merged.ok) throw new Error(merged.errors.join('; '));
const report = (m: string) => process.stderr.write(`${m}\n`);
const audit = createAudit(args.log, report);
const resolver = new Resolver(
  { resolveA: async () => ({ rcode: RCODE.NOERROR, ips: ['127.0.0.1'], ttl: 3600, upstream: 'memory' }) },
  { guard: (ip: string) => ip === '127.0.0.1' },
);
const proxy = await startProxy('127.0.0.1', 0, {
  allowlist: () => merged.allowlist,
  resolver,
  audit,
  limits: { ...DEFAULT_LIMITS, maxConnectionsPerClient: 100_000 },
  health: () => ({ healthy: true }),
  report,
});
process.stdout.write(`${proxy.address.port}\n`);
// A normal exit on SIGTERM, so that `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0));
