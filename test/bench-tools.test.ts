// The benchmark's tools. Turn-taking (bench/scenarios/common.ts): every path is warmed before any is
// measured, then the paths are measured in turn, round after round; each figure is the median of a
// path's rounds. The GC log summary (bench/gc-nvp.ts) reads both formats of --trace-gc-nvp.
import t from 'tap';
import { interleaved, medians } from '../bench/scenarios/common.js';
import { parseNvp } from '../bench/gc-nvp.js';

t.test('interleaved: warm-up of each path first, then A B C, A B C', async (t) => {
  const calls: string[] = [];
  const paths = [{ name: 'a' }, { name: 'b' }, { name: 'c' }];
  let n = 0;
  const out = await interleaved(
    paths,
    { rounds: 2, warmMs: 500 },
    async (p, ms) => calls.push(`warm ${p.name} ${ms}`),
    async (p) => {
      calls.push(`measure ${p.name}`);
      return n++;
    },
  );
  t.same(calls, ['warm a 500', 'warm b 500', 'warm c 500', 'measure a', 'measure b', 'measure c', 'measure a', 'measure b', 'measure c']);
  t.same(out, { a: [0, 3], b: [1, 4], c: [2, 5] });
});

t.test('interleaved: no warm-up when warmMs is 0 (the smoke preset)', async (t) => {
  let warmed = 0;
  const out = await interleaved(
    [{ name: 'a' }],
    { rounds: 1, warmMs: 0 },
    async () => warmed++,
    async () => 7,
  );
  t.equal(warmed, 0);
  t.same(out, { a: [7] });
});

t.test('medians: per path, over its rounds; null stays null (no proxy CPU for "direct")', async (t) => {
  const m = medians({ ours: [5, 1, 30], squid: [2, 4], direct: [null, null] }, (x) => x);
  t.same(m, { ours: 5, squid: 2, direct: null });
});

t.test('parseNvp: the scavenges of a --trace-gc-nvp log, Node 26 (JSON) and Node 24 (key=value) lines', async (t) => {
  const log = [
    '[1:0x1:0]     4100 ms: GC: {"pause":9.5,"gc":"s","new_space_survived":5767168,"promoted":5662310}',
    '[1:0x1:0]     4200 ms: Memory pool: Removed pages: 0',
    '[1:0x1:0]     4300 ms: pause=16.1 mutator=500.0 gc=s reduce_memory=0 semi_space_copied=1024.0 promoted=2048.0',
    '[1:0x1:0]     4400 ms: GC: {"pause":6.4,"gc":"mc"}',
    '[1:0x1:0]     4500 ms: GC: {not json',
  ].join('\n');
  t.same(parseNvp(log), [
    { t: 4100, kind: 's', pause: 9.5, survived: 5767168, promoted: 5662310 },
    { t: 4300, kind: 's', pause: 16.1, survived: 3072, promoted: 2048 },
    { t: 4400, kind: 'mc', pause: 6.4, survived: 0, promoted: 0 },
  ]);
});
