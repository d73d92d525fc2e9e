// Scavenges in a `node --trace-gc-nvp` log, summarised: how often, how long, how much survived each one
// and how much of that was promoted to the old space (what makes scavenges long and mark-compacts
// frequent). Reads both formats (Node 26: `GC: {json}`; Node 24: `key=value` pairs).
// Usage: node dist/bench/gc-nvp.js LOG [fromMs]   (fromMs: skip the start, default 4000)
import { readFileSync } from 'node:fs';
import { median } from './stats.js';

interface Gc {
  t: number;
  kind: string;
  pause: number;
  survived: number;
  promoted: number;
}

export function parseNvp(text: string): Gc[] {
  const out: Gc[] = [];
  for (const line of text.split('\n')) {
    const at = /\s(\d+) ms: /.exec(line);
    if (!at) continue;
    const json = line.indexOf('GC: {');
    let f: Record<string, unknown>;
    if (json >= 0) {
      try {
        f = JSON.parse(line.slice(json + 4)) as Record<string, unknown>;
      } catch {
        continue;
      }
    } else if (line.includes(' gc=')) {
      f = Object.fromEntries([...line.matchAll(/([\w.]+)=([\w.]+)/g)].map((m) => [m[1], Number.isNaN(Number(m[2])) ? m[2] : Number(m[2])]));
      f.new_space_survived = Number(f.semi_space_copied ?? 0) + Number(f.promoted ?? 0);
    } else continue;
    out.push({
      t: Number(at[1]),
      kind: String(f.gc),
      pause: Number(f.pause),
      survived: Number(f.new_space_survived ?? 0),
      promoted: Number(f.promoted ?? 0),
    });
  }
  return out;
}

if (process.argv[1]?.endsWith('gc-nvp.js')) {
  const from = Number(process.argv[3] ?? 4000);
  const all = parseNvp(readFileSync(process.argv[2] ?? '/dev/stdin', 'utf8')).filter((g) => g.t >= from);
  const minor = all.filter((g) => g.kind === 's' || g.kind === 'mms');
  const major = all.filter((g) => g.kind === 'mc');
  if (minor.length < 2) {
    process.stdout.write('fewer than two young-generation GCs after the start: run the load longer\n');
  } else {
    const kb = (x: number) => Math.round(x / 1024);
    const every = (minor[minor.length - 1]!.t - minor[0]!.t) / (minor.length - 1);
    process.stdout.write(
      `${minor.length} young GCs, one every ${Math.round(every)} ms; pause median ${median(minor.map((g) => g.pause)).toFixed(2)} ms; ` +
        `survived median ${kb(median(minor.map((g) => g.survived)))} KB, promoted median ${kb(median(minor.map((g) => g.promoted)))} KB; ` +
        `${major.length} mark-compacts\n`,
    );
  }
}
