// One condensed table across scenarios (the README's "Performance" table), from a results file:
//   node dist/bench/summary.js [bench/results/latest-full.json]
import { readFileSync } from 'node:fs';
import { OURS, type ScenarioResult } from './table.js';

interface Results {
  preset: string;
  commit: string;
  command: string;
  started: string;
  machine: { cpus: number; cpu: string; memGB: number; kernel: string; node: string; gatewayNode?: string };
  results: ScenarioResult[];
}

const COLS = [OURS, 'direct', 'squid', 'tinyproxy', 'node-min', 'dnsmasq', 'unbound'];

const fmt = (x: number | null | undefined): string => {
  if (x === null || x === undefined || Number.isNaN(x)) return '';
  const a = Math.abs(x);
  return a >= 100 ? Math.round(x).toLocaleString('en-US') : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
};

export function summary(r: Results): string {
  const find = (id: string, metric: string) => r.results.find((s) => s.id === id)?.rows.find((row) => row.metric === metric);
  const picks: Array<[string, string, string]> = [
    ['tunnel', 'throughput', 'tunnel throughput (MB/s)'],
    ['tunnel', 'proxy CPU per GB relayed', 'tunnel: proxy CPU per GB relayed (ms)'],
    ['connect', 'added p50 over direct, c=1', 'added connect latency p50, c=1 (ms)'],
    ['connect', 'new tunnels/s, c=64', 'new tunnels/s, c=64'],
    ['connect', 'new tunnels/s, c=512', 'new tunnels/s, c=512'],
    ['connect', 'proxy CPU per 1,000 tunnels, c=64', 'connect: proxy CPU per 1,000 tunnels, c=64 (ms)'],
    ['http', 'requests/s, c=64', 'plain HTTP requests/s, c=64'],
    ['http', 'latency p99, c=64', 'plain HTTP p99, c=64 (ms)'],
    ['http', 'proxy CPU per 1,000 requests, c=64', 'plain HTTP: proxy CPU per 1,000 requests, c=64 (ms)'],
    ['dns', 'cached allowed: queries/s', 'DNS cached allowed (q/s)'],
    ['dns', 'uncached allowed: queries/s', 'DNS uncached allowed (q/s)'],
    ['dns', 'denied: queries/s', 'DNS denied (q/s)'],
    ['dns', 'cached allowed: p99', 'DNS cached p99 (ms)'],
    ['firewall', 'added by the firewall (answer → set entry), p50', 'firewall sync: added DNS delay p50 (ms)'],
    ['firewall', 'added by the firewall (answer → set entry), p99', 'firewall sync: added DNS delay p99 (ms)'],
    ['memory', 'idle', 'RSS idle (MB)'],
    ['memory', '1000 idle tunnels', 'RSS with 1,000 idle tunnels (MB)'],
    ['memory', 'growth in the second half', 'RSS growth, 2nd half of the mixed load (MB)'],
  ];
  const lines = [`| measure | ${COLS.join(' | ')} | target |`, `| :-- | ${COLS.map(() => '--:').join(' | ')} | :-- |`];
  for (const [id, metric, label] of picks) {
    const row = find(id, metric);
    if (!row) continue;
    const target = row.target ? `${row.target} ${row.met ? '✅' : '❌'}` : '';
    lines.push(`| ${label} | ${COLS.map((c) => fmt(row.values[c])).join(' | ')} | ${target} |`);
  }
  const scaling = r.results.find((s) => s.id === 'scaling');
  if (scaling) {
    const d = scaling.rows[0]!;
    const reload = scaling.rows.find((row) => row.metric.startsWith('reload'));
    const sizes = scaling.columns;
    lines.push(
      `| decide() per name (ns) at ${sizes.slice().reverse().join(' / ')} | ${sizes
        .slice()
        .reverse()
        .map((c) => fmt(d.values[c]))
        .join(' / ')} | | | | | | | ${d.target ?? ''} ${d.met ? '✅' : '❌'} |`,
    );
    if (reload)
      lines.push(
        `| allowlist reload (ms) at ${sizes.slice().reverse().join(' / ')} | ${sizes
          .slice()
          .reverse()
          .map((c) => fmt(reload.values[c]))
          .join(' / ')} | | | | | | | |`,
      );
  }
  const m = r.machine;
  return `${lines.join('\n')}\n\n\`${r.command}\` (preset ${r.preset}, commit ${r.commit}, ${r.started.slice(0, 16).replace('T', ' ')} UTC) on ${m.cpus} vCPU ${m.cpu}, ${m.memGB} GB, Linux ${m.kernel}, Node ${m.node.replace(/^v/, '')}${m.gatewayNode && m.gatewayNode !== m.node ? ` (the gateway and node-min on Node ${m.gatewayNode.replace(/^v/, '')})` : ''}; a shared machine (other test suites ran at the same time): expect ±20 % between runs.\n`;
}

if (process.argv[1]?.endsWith('summary.js')) {
  const file = process.argv[2] ?? 'bench/results/latest-full.json';
  process.stdout.write(summary(JSON.parse(readFileSync(file, 'utf8')) as Results));
}
