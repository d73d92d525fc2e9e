// Scaling with the allowlist's size: the cost of one decision (reversed-label trie: should not grow with
// the number of rules) and the reload time (read + parse + validate + build + write the effective list).
// Runs in-process (no network): the gateway's own policy and config code.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { mergeSources, type Allowlist } from '../../proxy/policy/allowlist.js';
import { readRuleFile, writeEffective } from '../../proxy/config.js';
import type { Row, ScenarioResult } from '../table.js';
import type { Ctx } from './common.js';

const label = (n: number) => (n >= 1000 ? `${n / 1000}k rules` : `${n} rules`);

/** n rules over 100 base domains, a third each exact, "*." and ".". Rule 0 is ".svc0.scale0.example". */
function rulesText(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `svc${i}.scale${i % 100}.example`;
    lines.push(i % 3 === 0 ? `.${name}` : i % 3 === 1 ? `*.${name}` : name);
  }
  return `${lines.join('\n')}\n`;
}

/** Best of 5 rounds (the machine is shared: the minimum is the least disturbed figure). */
function nsPerOp(a: Allowlist, host: string, iterations: number): number {
  let allowed = 0;
  for (let i = 0; i < 2000; i++) if (a.evaluate(host, 'connect', 443).allow) allowed++; // warm
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    for (let i = 0; i < iterations / 5; i++) if (a.evaluate(host, 'connect', 443).allow) allowed++;
    best = Math.min(best, ((performance.now() - t) * 1e6) / (iterations / 5));
  }
  return allowed >= 0 ? best : NaN;
}

export async function scaling({ env, preset, log }: Ctx): Promise<ScenarioResult> {
  const sizes = [...preset.scaleSizes].sort((a, b) => b - a);
  const columns = sizes.map(label);
  const probes = [
    { metric: 'decide(), allowed, 4 labels', host: 'api.svc0.scale0.example' },
    { metric: 'decide(), allowed, 8 labels', host: 'a.b.c.d.api.svc0.scale0.example' },
    { metric: 'decide(), not listed, 4 labels', host: 'api.other0.scale0.example' },
    { metric: 'decide(), not listed, 2 labels', host: 'nothing.test' },
  ];
  const values: Record<string, Record<string, number>> = {};
  const reload: Record<string, number> = {};
  const iterations = preset.name === 'smoke' ? 20_000 : 300_000;
  for (const n of sizes) {
    const path = join(env.dir, `scale-${n}.txt`);
    writeFileSync(path, rulesText(n));
    const reps = n >= 100_000 ? 1 : 3;
    let best = Infinity;
    let allowlist: Allowlist | undefined;
    for (let r = 0; r < reps; r++) {
      const t = performance.now();
      const file = await readRuleFile(path);
      const m = mergeSources({ defaults: false, flags: [], file });
      if (!m.ok) throw new Error(m.errors.slice(0, 3).join('; '));
      await writeEffective(path, m.allowlist);
      best = Math.min(best, performance.now() - t);
      allowlist = m.allowlist;
    }
    reload[label(n)] = best;
    for (const p of probes) (values[p.metric] ??= {})[label(n)] = nsPerOp(allowlist!, p.host, iterations);
    log(`scaling ${n}: reload ${best.toFixed(1)} ms, ${probes.map((p) => `${values[p.metric]![label(n)]!.toFixed(0)} ns`).join(' / ')}`);
  }
  const big = label(sizes[0]!);
  const small = label(sizes[sizes.length - 1]!);
  const rows: Row[] = probes.map((p, i) => ({
    metric: p.metric,
    unit: 'ns',
    better: 'lower',
    values: values[p.metric]!,
    ...(i === 0 ? { target: `O(labels): ${big} ≤ 2× ${small}`, met: values[p.metric]![big]! <= 2 * values[p.metric]![small]! } : {}),
  }));
  rows.push({ metric: 'reload (read, validate, build, write effective list)', unit: 'ms', better: 'lower', values: reload });
  return {
    id: 'scaling',
    title: 'Scaling with allowlist size (in-process)',
    columns,
    rows,
    notes: [
      `decide(host, "connect", 443) without its memo (Allowlist.evaluate) best of 5 rounds of ${(iterations / 5).toLocaleString('en-US')} calls (includes name normalisation); rules spread over 100 base domains, one third each exact, "*." and ".".`,
      'Ratio columns here are growth factors (largest list ÷ smaller list); peers are not compared on this one.',
    ],
  };
}
