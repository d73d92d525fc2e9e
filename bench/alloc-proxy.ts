// Where the proxy allocates: bench/ab-proxy.ts (the proxy of the build at ROOT, as the gateway wires it)
// under V8's sampling heap profiler, counting the objects already collected too (a CPU profile hides
// allocation: its cost is spread over GC and every allocating line). Sampling starts after `warmupMs`;
// on SIGTERM it prints the top allocation sites (function, file:line) with their share of the bytes
// allocated, to standard error, and exits. Drive it with bench/loadgen.ts or wrk (bench/README.md).
// With `"survivors":true` it counts only what outlived a scavenge (promoted to the old space, then
// collected by a mark-compact or still live): the objects that make scavenges and mark-compacts long.
// Usage: node dist/bench/alloc-proxy.js '{"root":"/path/to/checkout","name":"conn.bench.example","log":"/tmp/x.jsonl","warmupMs":3000,"top":30}'
import { Session } from 'node:inspector/promises';

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as { warmupMs?: number; top?: number; survivors?: boolean };
const session = new Session();
session.connect();
await session.post('HeapProfiler.enable');
await import('./ab-proxy.js'); // prints the port, serves
setTimeout(() => {
  void session.post('HeapProfiler.startSampling', {
    samplingInterval: 512,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: !args.survivors,
  });
}, args.warmupMs ?? 3000);

/** Bytes sampled per allocation site. */
function sites(node: SamplingNode, into: Map<string, number>): void {
  const f = node.callFrame;
  const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/.*\//, '')}:${f.lineNumber + 1}`;
  into.set(key, (into.get(key) ?? 0) + node.selfSize);
  for (const c of node.children) sites(c, into);
}

process.removeAllListeners('SIGTERM');
process.on('SIGTERM', () => {
  void session.post('HeapProfiler.stopSampling').then(({ profile }) => {
    const bySite = new Map<string, number>();
    sites(profile.head as SamplingNode, bySite);
    const total = [...bySite.values()].reduce((a, b) => a + b, 0);
    const top = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, args.top ?? 30);
    process.stderr.write(`${(total / 1e6).toFixed(1)} MB sampled\n`);
    for (const [site, bytes] of top) process.stderr.write(`${((100 * bytes) / total).toFixed(1).padStart(5)} %  ${site}\n`);
    process.exit(0);
  });
});
