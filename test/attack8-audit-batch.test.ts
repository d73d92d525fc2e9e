// ATTACK8 (audit.ts: lines held in the module, one string per batch): rotation while batches are in
// flight, close during a pending batch and a rotation, very long multibyte lines, the stop line last.
// Every line arrives whole, once, in order, across the rotated files. Held.
import t from 'tap';
import { join } from 'node:path';
import { createAudit } from '../proxy/audit.js';
import { fileLines, logFiles } from '../cli/auditlog.js';
import { tempDir } from './harness/world.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('rotation + long multibyte lines + close right after a burst: nothing lost, repeated or reordered', async (t) => {
  for (const round of [0, 1, 2]) {
    const dir = tempDir();
    t.teardown(dir.remove);
    const path = join(dir.path, 'audit.jsonl');
    const errors: string[] = [];
    const audit = createAudit(path, (m) => void errors.push(m), { rotation: { maxBytes: 16 * 1024, keep: 1000 } });
    const N = 3000;
    for (let i = 0; i < N; i++) {
      // every 97th line is long (up to 300 KB, 2- and 4-byte UTF-8 characters), the rest short
      const big = i % 97 === 0 ? 'é😀x'.repeat(1 + ((i * 7919) % 75_000)) : '';
      audit.write({ event: 'reload', ok: true, rules: i, added: [`r${i}.example${big}`], removed: [] });
      if (i % 250 === 0 && round !== 2) await sleep(1 + (i % 7));
    }
    audit.write({ event: 'stop' });
    audit.write({ event: 'reload', ok: true, rules: -1, added: ['after stop (kept: only close drops)'], removed: [] });
    await audit.close();
    audit.write({ event: 'reload', ok: true, rules: -2, added: ['after close'], removed: [] });
    await sleep(50);
    const seq: number[] = [];
    let whole = 0;
    let broken = 0;
    let last = '';
    for (const f of await logFiles(path)) {
      for await (const l of fileLines(f)) {
        try {
          const e = JSON.parse(l) as { event: string; rules?: number; added?: string[] };
          whole++;
          last = e.event;
          if (e.event === 'reload') {
            seq.push(e.rules!);
            if (e.rules! >= 0 && !e.added![0]!.startsWith(`r${e.rules}.example`)) broken++;
            const big = e.rules! >= 0 ? e.added![0]!.slice(`r${e.rules}.example`.length) : '';
            if (big && big !== 'é😀x'.repeat(big.length / 4)) broken++;
          }
        } catch {
          if (!broken) t.comment(`broken line of ${l.length}: ${JSON.stringify(l.slice(0, 80))}…${JSON.stringify(l.slice(-40))}`);
          broken++;
        }
      }
    }
    t.same(errors, [], `round ${round}: no destination error`);
    t.equal(broken, 0, `round ${round}: every line whole and exact (${whole} lines)`);
    const want = [...Array(N).keys(), -1];
    t.same(seq, want, `round ${round}: every line once, in order (${seq.length} of ${want.length})`);
    t.equal(last, 'reload', `round ${round}: the line after stop, written before close, comes last`);
  }
});
