// proxy/runtime.ts: the Node flags the gateway runs with (image/Dockerfile.gateway's ENTRYPOINT is held
// to them by test/image.test.ts; bench/results/perf8-nepotism.md measures what they change). Here, what
// they do, seen from outside, in a Node started with them: an allocation site whose objects all survive
// young-generation GCs keeps allocating in the young generation (without the flags V8 "pretenures" it:
// allocates its objects in the old generation, where a dead one keeps what it points to alive until the
// next full GC). The flags are accepted by the Node that runs this suite as by the image's.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GATEWAY_NODE_FLAGS } from '../proxy/runtime.js';

const PROBE = `
import v8 from 'node:v8';
import vm from 'node:vm';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const make = (i) => ({ a: i, b: i, c: i, d: i });
const space = (name) => v8.getHeapSpaceStatistics().find((s) => s.space_name === name).space_used_size;
const keep = [];
for (let round = 0; round < 20; round++) {
  for (let i = 0; i < 20000; i++) keep.push(make(i));
  gc({ type: 'minor' });
}
gc({ type: 'minor' });
const old0 = space('old_space');
const new0 = space('new_space');
const more = [];
for (let i = 0; i < 10000; i++) more.push(make(i));
console.log(JSON.stringify({ old: space('old_space') - old0, young: space('new_space') - new0, n: keep.length + more.length }));
`;

/**
 * Where ~0.5 MB of objects from a site whose every object survived went: the old or the young generation.
 * The young generation is held at 4 MB: V8 decides to pretenure only at a scavenge of a young generation
 * at its largest, and how fast it grows there depends on the machine's load (a CI run with other tests
 * beside it left it smaller, and the control found nothing). A clean environment: no NODE_OPTIONS.
 */
async function probe(flags: readonly string[]): Promise<{ old: number; young: number; n: number }> {
  const heap = ['--min-semi-space-size=4', '--max-semi-space-size=4'];
  const r = await promisify(execFile)(process.execPath, [...heap, ...flags, '--input-type=module', '-e', PROBE], {
    env: { PATH: process.env.PATH ?? '' },
  });
  return JSON.parse(r.stdout) as { old: number; young: number; n: number };
}

t.test("with the gateway's flags, a site whose objects all survive still allocates them young", async (t) => {
  const r = await probe(GATEWAY_NODE_FLAGS);
  t.equal(r.n, 410_000);
  t.ok(r.old < 150_000, `old generation grew ${Math.round(r.old / 1024)} KiB`);
  t.ok(r.young > 300_000, `young generation grew ${Math.round(r.young / 1024)} KiB`);
});

t.test('without them the same site is pretenured (the control: the probe can tell)', async (t) => {
  // Up to three tries: V8's decision rests on its own heuristics; one pretenured run shows the probe works.
  const grew: number[] = [];
  for (let i = 0; i < 3 && !(grew.at(-1)! > 300_000); i++) grew.push((await probe([])).old);
  t.ok(grew.at(-1)! > 300_000, `old generation grew ${grew.map((b) => Math.round(b / 1024)).join(', ')} KiB`);
});
