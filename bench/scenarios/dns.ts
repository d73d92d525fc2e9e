// DNS: queries/s and latency for cached allowed names, uncached names (the upstream answers at once)
// and denied names, measured with dnsperf (Debian package) against ours, dnsmasq and unbound.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOMAIN, LISTEN } from '../env.js';
import { summarize } from '../stats.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { dnsServers, type Ctx } from './common.js';

export interface DnsperfResult {
  qps: number;
  lost: number;
  p50: number;
  p99: number;
  rcodes: Record<string, number>;
}

export function parseDnsperf(out: string): DnsperfResult {
  const lat: number[] = [];
  const rcodes: Record<string, number> = {};
  for (const m of out.matchAll(/^> (\S+) \S+ \S+ ([0-9.]+)$/gm)) {
    rcodes[m[1]!] = (rcodes[m[1]!] ?? 0) + 1;
    lat.push(Number(m[2]) * 1000);
  }
  const s = summarize(lat);
  return {
    qps: Number(/Queries per second:\s+([0-9.]+)/.exec(out)?.[1] ?? NaN),
    lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN),
    p50: s.p50,
    p99: s.p99,
    rcodes,
  };
}

export function queryFile(dir: string, name: string, names: Iterable<string>): string {
  const path = join(dir, `dns-${name}.txt`);
  let text = '';
  for (const n of names) text += `${n} A\n`;
  writeFileSync(path, text);
  return path;
}

function* seq(n: number, f: (i: number) => string) {
  for (let i = 0; i < n; i++) yield f(i);
}

export async function dnsperf(ctx: Ctx, port: number, file: string, args: string[], seconds: number): Promise<DnsperfResult> {
  const out = await ctx.env.run(
    'dnsperf',
    ['-s', LISTEN, '-p', String(port), '-d', file, '-c', '4', '-q', '200', '-t', '2', '-v', ...args, '-l', String(seconds)],
    (seconds + 30) * 1000,
  );
  return parseDnsperf(out);
}

export async function dns(ctx: Ctx): Promise<ScenarioResult> {
  const { env, preset, log } = ctx;
  const servers = dnsServers(env);
  const columns = servers.map((s) => s.name);
  const rows: Row[] = [];
  const notes: string[] = [];
  const cached = queryFile(
    env.dir,
    'cached',
    seq(100, (i) => `c${i}.${DOMAIN}`),
  );
  const denied = queryFile(
    env.dir,
    'denied',
    seq(100, (i) => `d${i}.denied.test`),
  );
  const cases = [
    { id: 'cached', label: 'cached allowed', expect: 'NOERROR' },
    { id: 'uncached', label: 'uncached allowed', expect: 'NOERROR' },
    { id: 'denied', label: 'denied', expect: 'NXDOMAIN' },
  ] as const;
  for (const c of cases) {
    const res: Record<string, DnsperfResult> = {};
    for (const s of servers) {
      let r: DnsperfResult;
      if (c.id === 'cached') {
        await dnsperf(ctx, s.port, cached, ['-n', '1'], 5); // warm the cache
        r = await dnsperf(ctx, s.port, cached, [], preset.dnsSeconds);
      } else if (c.id === 'uncached') {
        // Every name once: nothing can come from a cache (the upstream dnsmasq answers from its zone).
        const file = queryFile(
          env.dir,
          `uncached-${s.name}`,
          seq(60_000 * preset.dnsSeconds, (i) => `u${i}-${Date.now().toString(36)}.${DOMAIN}`),
        );
        r = await dnsperf(ctx, s.port, file, ['-n', '1'], preset.dnsSeconds);
      } else {
        r = await dnsperf(ctx, s.port, denied, [], preset.dnsSeconds);
      }
      res[s.name] = r;
      const wrong = Object.entries(r.rcodes).filter(([k]) => k !== c.expect);
      log(
        `dns ${c.id} ${s.name}: ${r.qps.toFixed(0)} q/s p50 ${r.p50.toFixed(3)} ms p99 ${r.p99.toFixed(3)} ms lost ${r.lost} ${JSON.stringify(r.rcodes)}`,
      );
      const sent = Object.values(r.rcodes).reduce((a, b) => a + b, 0) + r.lost;
      if (wrong.length || r.lost > 0.01 * sent)
        notes.push(`${c.label}, ${s.name}: ${r.lost} lost, unexpected rcodes ${JSON.stringify(Object.fromEntries(wrong))}`);
    }
    const pick = (f: (r: DnsperfResult) => number) => Object.fromEntries(Object.entries(res).map(([k, v]) => [k, f(v)]));
    const ours = res[OURS]!.qps;
    const dm = res.dnsmasq?.qps;
    rows.push(
      {
        metric: `${c.label}: queries/s`,
        unit: 'q/s',
        better: 'higher',
        values: pick((r) => r.qps),
        ...(c.id === 'cached' ? { target: '≥ 20k and ≥ 0.5× dnsmasq', met: ours >= 20_000 && (dm === undefined || ours >= 0.5 * dm) } : {}),
      },
      { metric: `${c.label}: p50`, unit: 'ms', better: 'lower', values: pick((r) => r.p50) },
      { metric: `${c.label}: p99`, unit: 'ms', better: 'lower', values: pick((r) => r.p99) },
    );
  }
  notes.unshift(
    `dnsperf -c 4 -q 200 -l ${preset.dnsSeconds} (UDP, type A); latency percentiles from its per-query output (-v). Cached: 100 names, warmed first. Uncached: every name asked once (\`-n 1\`); the upstream is a dnsmasq on ${'198.51.100.53'} answering from its zone. Denied: names outside the allowlist (NXDOMAIN, never forwarded).`,
    'Every server logs each query (ours: the audit log, dnsmasq --log-queries, unbound log-queries), all single-threaded (unbound num-threads 1).',
    'dnsperf counts the queries still in flight when its time limit ends as lost (a few dozen per run); more than 1 % lost, or a wrong rcode, is listed below.',
  );
  return { id: 'dns', title: 'DNS (dnsperf)', columns, rows, notes };
}
