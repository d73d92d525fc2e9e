// Tunnel throughput: one bulk download through a CONNECT tunnel vs the same download over plain TCP.
import { BULK } from '../env.js';
import { withCpu } from '../cpu.js';
import { median } from '../stats.js';
import { OURS, type ScenarioResult } from '../table.js';
import { proxies, type Ctx } from './common.js';

export async function tunnel({ env, preset, log }: Ctx): Promise<ScenarioResult> {
  const paths = [...proxies(env), { name: 'direct', via: 'direct' }];
  const runs: Record<string, number[]> = {};
  const cpu: Record<string, number> = {};
  const download = (via: string) =>
    env.node<{ MBps: number }>(
      'loadgen.js',
      { mode: 'bulk', via, target: `${BULK.ip}:${BULK.port}`, name: BULK.name, bytes: preset.bulkBytes },
      120_000,
    );
  // One unmeasured download per path first (unless the preset has no warm-up): this is the first
  // scenario on a fresh gateway, and a Node proxy's relay code is still being compiled during its first
  // downloads (as the connect and HTTP points get their warm-up).
  if (preset.warmMs > 0) for (const p of paths) await download(p.via);
  for (let rep = 0; rep < preset.bulkReps; rep++) {
    for (const p of paths) {
      const { r, cpu: ms } = await withCpu(env, p.name, () => download(p.via));
      (runs[p.name] ??= []).push(r.MBps);
      if (p.name !== 'direct') cpu[p.name] = (cpu[p.name] ?? 0) + ms;
      log(`tunnel ${p.name} rep ${rep + 1}: ${r.MBps.toFixed(0)} MB/s`);
    }
  }
  const values = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  const ours = values[OURS]!;
  return {
    id: 'tunnel',
    title: `Tunnel throughput (${preset.bulkBytes / 2 ** 20} MiB download, median of ${preset.bulkReps})`,
    columns: [OURS, 'direct', ...paths.filter((p) => p.name !== OURS && p.name !== 'direct').map((p) => p.name)],
    rows: [
      {
        metric: 'throughput',
        unit: 'MB/s',
        better: 'higher',
        values,
        target: '≥ 0.9× direct and ≥ squid',
        met: ours >= 0.9 * values.direct! && (values.squid === undefined || ours >= values.squid),
      },
      {
        metric: 'proxy CPU per GB relayed',
        unit: 'ms',
        better: 'lower',
        values: Object.fromEntries(Object.entries(cpu).map(([k, ms]) => [k, ms / ((preset.bulkBytes * preset.bulkReps) / 1e9)])),
      },
    ],
    notes: [
      'One TCP stream: loadgen (Node) ⇄ proxy ⇄ bulk server (Node), all on the namespace loopback; "direct" is the same client and server without a proxy.',
      'Port-443 tunnel: the client sends a ClientHello naming the host first (the gateway checks SNI), then the server streams.',
      'Proxy CPU: user + system time of the proxy process (all threads, /proc/PID/stat) over every download, per 10⁹ bytes.',
      ...(preset.warmMs > 0
        ? ['Each path first makes one unmeasured download of the same size; then the paths take turns, rep by rep.']
        : []),
    ],
  };
}
