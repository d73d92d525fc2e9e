// proxy/live-list.ts: the registry's and the proxy's list of what is open. Its entries come and go
// (add, remove once, a copy to go through), and — the reason it is not a Set — what was taken out keeps
// nothing alive through a young-generation GC: under load a Set's dropped tables kept every connection
// since the last scavenge (bench/results/perf8-nepotism.md).
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { LiveList } from '../proxy/live-list.js';

t.test('add, remove (once), size and a copy of the values, newest first', async (t) => {
  const l = new LiveList<string>();
  const ra = l.add('a');
  const rb = l.add('b');
  const rc = l.add('c');
  t.same(l.values(), ['c', 'b', 'a']);
  t.equal(l.size, 3);
  rb();
  t.same(l.values(), ['c', 'a'], 'from the middle');
  rb();
  t.equal(l.size, 2, 'a second remove does nothing');
  rc();
  t.same(l.values(), ['a'], 'the newest');
  const rd = l.add('d');
  ra();
  t.same(l.values(), ['d'], 'the oldest');
  rd();
  t.same(l.values(), []);
  t.equal(l.size, 0);
  // The same value twice is two entries, each removed by its own function.
  const r1 = l.add('x');
  l.add('x');
  r1();
  t.same(l.values(), ['x']);
});

t.test('removing while going through the values (as close() destroys every socket)', async (t) => {
  const l = new LiveList<number>();
  const removers = new Map<number, () => void>();
  for (let i = 0; i < 5; i++) removers.set(i, l.add(i));
  const seen: number[] = [];
  for (const v of l.values()) {
    seen.push(v);
    removers.get(v)!();
    removers.get((v + 1) % 5)!(); // a neighbour too
  }
  t.same(seen, [4, 3, 2, 1, 0], 'every value of the copy is seen');
  t.equal(l.size, 0);
});

t.test('entries taken out keep nothing alive through a young-generation GC', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
  /** Bytes still in the heap after a scavenge, of `n` values (~1 KiB each) added and removed with `live` open at a time. */
  const kept = (list: { add(v: object): () => void }, n: number, live: number): number => {
    const open: Array<() => void> = [];
    const add = () => {
      open.push(list.add({ pad: new Array(128).fill(0) }));
      if (open.length > live) open.shift()!();
    };
    gc(); // what earlier code left behind is gone
    for (let i = 0; i < live; i++) add();
    // The list and its first entries reach the old generation, as a long-running gateway's do.
    for (let i = 0; i < 3; i++) gc({ type: 'minor' });
    const before = v8.getHeapStatistics().used_heap_size;
    for (let i = 0; i < n; i++) add();
    while (open.length) open.shift()!();
    gc({ type: 'minor' });
    return v8.getHeapStatistics().used_heap_size - before;
  };
  const setList = () => {
    const s = new Set<object>();
    return { add: (v: object) => (s.add(v), () => void s.delete(v)) };
  };
  const byList = kept(new LiveList<object>(), 5000, 64);
  // The control, after: a Set keeps (nearly) all of the ~5 MB; if it did not, this test could not tell.
  const bySet = kept(setList(), 5000, 64);
  t.ok(byList < 1_000_000, `the list keeps ${Math.round(byList / 1024)} KiB`);
  t.ok(bySet > 3_000_000, `a Set keeps ${Math.round(bySet / 1024)} KiB (the effect this list avoids)`);
});
