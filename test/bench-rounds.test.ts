// The benchmark's turn-taking (bench/scenarios/common.ts): every path is warmed before any is measured,
// then the paths are measured in turn, round after round; each figure is the median of a path's rounds.
import t from 'tap';
import { interleaved, medians } from '../bench/scenarios/common.js';

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
