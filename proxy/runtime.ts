// The Node flags the gateway process runs with: image/Dockerfile.gateway's ENTRYPOINT (held to this list
// by test/image.test.ts) and the benchmark's gateway (bench/env.ts, bench/ab.ts). V8 takes them only on
// the command line (NODE_OPTIONS refuses them; --no-maglev set from inside a running process does nothing).
//
// Both are about one thing: under load, V8's young-generation GC (the scavenge) kept the objects of nearly
// every connection since the last scavenge alive and promoted them, although only the open ones were
// reachable: 3–4 MB copied per scavenge, 7–10 ms pauses, more CPU per connection and a longer tail
// (bench/results/perf8-nepotism.md). A dead object in the old generation keeps what it points to
// alive through scavenges until the next full GC; these two put dead connection objects there.
// - --no-allocation-site-pretenuring: V8 allocates the objects of a site whose objects mostly survived in
//   the old generation from then on. A burst of new tunnels tenured sites plain HTTP shares, and every
//   request's record then lived (and died) in the old generation: plain HTTP after 20 s of tunnels spent
//   258 ms of 6 s in GC pauses of 7–10 ms; with this flag 47 ms, ~1.5 ms each. CPU per tunnel 0.88×.
// - --no-maglev: with V8's mid-tier compiler, a tunnel read through `onread` (proxy/http/relay.ts) stayed
//   reachable after close (so it does while the relay code is still interpreted or baseline-compiled;
//   compiled by TurboFan it does not: perf8-nepotism.md); without Maglev the hot relay code reaches
//   TurboFan and the tunnels' objects die young: 3.8 MB → 86 KB per scavenge,
//   CPU per tunnel 0.97×, per plain-HTTP request 0.93× (bench/ab.ts). Hot code goes from the baseline
//   compiler straight to TurboFan.
export const GATEWAY_NODE_FLAGS = ['--no-maglev', '--no-allocation-site-pretenuring'] as const;
