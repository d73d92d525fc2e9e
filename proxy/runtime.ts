// V8 settings of the gateway process, set once at its start (cli/gateway.ts; bench/ab-proxy.ts, which
// stands in for the gateway in the in-process benchmarks).
//
// --no-allocation-site-pretenuring: V8 watches which allocation sites' objects survive a young-generation
// GC and, past 85 %, allocates that site's objects in the old generation from then on. Under a burst of
// new tunnels nearly everything survived (perf7/perf8 in bench/results/), so sites the plain-HTTP path
// shares (a connection's record, its closures) were tenured for the rest of the process: each request's
// record then lived in the old generation, dead but kept until the next full GC, and kept its young
// objects alive through every scavenge. Plain HTTP after a minute of new tunnels: 258 ms of GC pauses in
// 6 s, 7–10 ms each; with this setting 47 ms, ~1.5 ms each. New tunnels: CPU per tunnel 0.88× (bench/ab.ts).
import v8 from 'node:v8';

export const V8_FLAGS = ['--no-allocation-site-pretenuring'] as const;

/** Apply V8_FLAGS to this process (before it serves; V8 reads them at each GC). */
export function tuneRuntime(): void {
  for (const f of V8_FLAGS) v8.setFlagsFromString(f);
}
