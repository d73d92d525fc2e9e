// proxy/runtime.ts: the gateway's V8 settings. What they are for, seen from outside: an allocation site
// whose objects all survive young-generation GCs keeps allocating in the young generation (V8 would
// otherwise "pretenure" it: allocate its objects in the old generation, where a dead one keeps what it
// points to alive until the next full GC; bench/results/perf8-nepotism.md). The gateway command applies
// them (cli/gateway.ts).
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { readFileSync } from 'node:fs';
import { tuneRuntime, V8_FLAGS } from '../proxy/runtime.js';

t.test('a site whose objects all survive still allocates them young', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
  tuneRuntime();
  const make = (i: number) => ({ a: i, b: i, c: i, d: i });
  const space = (name: string) => v8.getHeapSpaceStatistics().find((s) => s.space_name === name)!.space_used_size;
  const keep: object[] = [];
  // Every object of `make` survives: V8's feedback for the site says "long-lived".
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 20_000; i++) keep.push(make(i));
    gc({ type: 'minor' });
  }
  gc({ type: 'minor' });
  const old0 = space('old_space');
  const new0 = space('new_space');
  const more: object[] = [];
  for (let i = 0; i < 10_000; i++) more.push(make(i)); // ~0.5 MB
  const grewOld = space('old_space') - old0;
  const grewNew = space('new_space') - new0;
  t.ok(grewOld < 150_000, `old generation grew ${Math.round(grewOld / 1024)} KiB (pretenured: ~550)`);
  t.ok(grewNew > 300_000, `young generation grew ${Math.round(grewNew / 1024)} KiB`);
  t.equal(keep.length + more.length, 410_000);
});

t.test('the gateway command applies them before it starts serving', async (t) => {
  const src = readFileSync(new URL('../cli/gateway.ts', import.meta.url), 'utf8');
  const tuned = src.indexOf('tuneRuntime();');
  t.ok(tuned > 0, 'cli/gateway.ts calls tuneRuntime()');
  t.ok(tuned < src.indexOf('await startGateway('), 'before startGateway');
  t.same(V8_FLAGS, ['--no-allocation-site-pretenuring']);
});
