// Memory: resident set size of each proxy idle, holding N idle tunnels, and (ours) across a mixed load.
import { CONN, DOMAIN, PORTS } from '../env.js';
import type { Proc } from '../../test/harness/netns.js';
import { OURS, type ScenarioResult } from '../table.js';
import { proxies, sleep, type Ctx } from './common.js';
import { runWrk } from './http.js';
import { dnsperf, queryFile } from './dns.js';

export async function memory(ctx: Ctx): Promise<ScenarioResult> {
  const { env, preset, log } = ctx;
  const paths = proxies(env);
  const pidOf = (name: string) => (name === OURS ? env.gateway.pid : env.peers.proxy[name as 'squid' | 'tinyproxy']!.pid);
  const idle: Record<string, number> = {};
  const held: Record<string, number> = {};
  const notes: string[] = [];
  for (const p of paths) idle[p.name] = env.rss(pidOf(p.name));
  for (const p of paths) {
    const gen: Proc = env.spawnNode('loadgen.js', {
      mode: 'idle',
      via: p.via,
      target: `${CONN.ip}:${CONN.port}`,
      name: CONN.name,
      count: preset.idleTunnels,
      holdMs: 120_000,
    });
    try {
      await gen.waitFor(/ready/, 120_000);
      await sleep(1000);
      held[p.name] = env.rss(pidOf(p.name));
      const opened = /"opened":(\d+),"errors":(\d+)/.exec(gen.output());
      if (!opened || Number(opened[1]) !== preset.idleTunnels)
        notes.push(`${p.name}: only ${opened?.[1]} of ${preset.idleTunnels} tunnels opened (${opened?.[2]} errors)`);
      log(`memory ${p.name}: idle ${idle[p.name]!.toFixed(1)} MB, ${preset.idleTunnels} tunnels ${held[p.name]!.toFixed(1)} MB`);
    } finally {
      await gen.stop('SIGKILL');
    }
    await sleep(1000);
  }
  const perTunnel = Object.fromEntries(paths.map((p) => [p.name, ((held[p.name]! - idle[p.name]!) * 1024) / preset.idleTunnels]));

  // Mixed load on ours: tunnel churn + keep-alive HTTP + DNS (paced), in two halves; RSS after each.
  const half = Math.max(1, Math.round(preset.mixedSeconds / 2));
  const dnsFile = queryFile(
    env.dir,
    'mixed',
    (function* () {
      for (let i = 0; i < 2000; i++) yield `m${i}.${DOMAIN}`;
    })(),
  );
  const via = paths[0]!.via;
  const mixed = () =>
    Promise.all([
      env.node(
        'loadgen.js',
        { mode: 'connect', via, target: `${CONN.ip}:${CONN.port}`, name: CONN.name, concurrency: 16, durationMs: half * 1000 },
        half * 1000 + 60_000,
      ),
      runWrk(ctx, via, 16, half),
      dnsperf(ctx, PORTS.gatewayDns, dnsFile, ['-Q', '2000'], half),
    ]);
  const before = env.rss(env.gateway.pid);
  await mixed();
  const mid = env.rss(env.gateway.pid);
  await mixed();
  const end = env.rss(env.gateway.pid);
  await sleep(3000);
  const settled = env.rss(env.gateway.pid);
  log(
    `memory mixed: before ${before.toFixed(1)} MB, after ${half} s ${mid.toFixed(1)} MB, after ${2 * half} s ${end.toFixed(1)} MB, settled ${settled.toFixed(1)} MB`,
  );
  const only = (v: number) => ({ [OURS]: v });
  notes.push(
    `Idle tunnels: ${preset.idleTunnels} CONNECT tunnels opened (ClientHello sent and answered) and held; RSS read from /proc/PID/status (VmRSS).`,
    `Mixed load (ours only): ${2 * half} s of tunnel churn (16 workers) + wrk -c16 + dnsperf paced at 2,000 q/s over 2,000 names, run as two halves.`,
  );
  return {
    id: 'memory',
    title: 'Memory (RSS)',
    columns: paths.map((p) => p.name),
    rows: [
      { metric: 'idle', unit: 'MB', better: 'lower', values: idle },
      {
        metric: `${preset.idleTunnels} idle tunnels`,
        unit: 'MB',
        better: 'lower',
        values: held,
        target: preset.idleTunnels === 1000 ? '< 200 MB' : undefined,
        met: preset.idleTunnels === 1000 ? held[OURS]! < 200 : undefined,
      },
      { metric: 'per idle tunnel', unit: 'KB', better: 'lower', values: perTunnel },
      { metric: 'before mixed load', unit: 'MB', better: 'lower', values: only(before) },
      { metric: `after ${half} s mixed load`, unit: 'MB', better: 'lower', values: only(mid) },
      { metric: `after ${2 * half} s mixed load`, unit: 'MB', better: 'lower', values: only(end) },
      { metric: 'growth in the second half', unit: 'MB', better: 'lower', values: only(end - mid) },
      { metric: '3 s after the load', unit: 'MB', better: 'lower', values: only(settled) },
    ],
    notes,
  };
}
