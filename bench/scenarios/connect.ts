// Connection cost: new tunnels per second and time to first answer byte (connect → CONNECT → ClientHello → answer).
import { CONN } from '../env.js';
import { withCpu } from '../cpu.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { interleaved, medians, proxies, roundsNote, sleep, type Ctx } from './common.js';

interface ConnectResult {
  perSec: number;
  errors: number;
  lastError: string;
  latencyMs: { p50: number; p99: number; n: number };
}

export async function connect({ env, preset, log }: Ctx): Promise<ScenarioResult> {
  const paths = [...proxies(env), { name: 'direct', via: 'direct' }];
  const columns = [OURS, 'direct', ...paths.filter((p) => p.name !== OURS && p.name !== 'direct').map((p) => p.name)];
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const c of preset.concurrency) {
    const load = (p: { via: string }, ms: number) =>
      env.node<ConnectResult>(
        'loadgen.js',
        { mode: 'connect', via: p.via, target: `${CONN.ip}:${CONN.port}`, name: CONN.name, concurrency: c, durationMs: ms },
        ms + 60_000,
      );
    const rounds = await interleaved(
      paths,
      preset,
      // After each load, half a second for its sockets to leave TIME_WAIT's way.
      (p, ms) => load(p, ms).then(() => sleep(500)),
      async (p) => {
        const { r, cpu: ms } = await withCpu(env, p.name, () => load(p, preset.connectMs));
        log(
          `connect c=${c} ${p.name}: ${r.perSec.toFixed(0)}/s p50 ${r.latencyMs.p50.toFixed(3)} ms p99 ${r.latencyMs.p99.toFixed(3)} ms errors ${r.errors}`,
        );
        if (r.errors) notes.push(`c=${c} ${p.name}: ${r.errors} failed connections (last: ${r.lastError})`);
        await sleep(500);
        return { r, cpu: p.name === 'direct' ? null : ms / ((r.perSec * (preset.connectMs / 1000)) / 1000) };
      },
    );
    const pick = (f: (x: { r: ConnectResult; cpu: number | null }) => number | null) => medians(rounds, f);
    const p50 = pick((x) => x.r.latencyMs.p50);
    const added = Object.fromEntries(Object.entries(p50).map(([k, v]) => [k, k === 'direct' ? null : v! - p50.direct!]));
    const addedOurs = added[OURS]!;
    rows.push(
      { metric: `new tunnels/s, c=${c}`, unit: '/s', better: 'higher', values: pick((x) => x.r.perSec) },
      { metric: `latency p50, c=${c}`, unit: 'ms', better: 'lower', values: p50 },
      { metric: `latency p99, c=${c}`, unit: 'ms', better: 'lower', values: pick((x) => x.r.latencyMs.p99) },
      {
        metric: `added p50 over direct, c=${c}`,
        unit: 'ms',
        better: 'lower',
        values: added,
        ...(c === 1 ? { target: '≤ 1 ms', met: addedOurs <= 1 } : {}),
      },
      { metric: `proxy CPU per 1,000 tunnels, c=${c}`, unit: 'ms', better: 'lower', values: pick((x) => x.cpu) },
    );
  }
  notes.unshift(
    `Each worker loops for ${preset.connectMs / 1000} s: TCP connect → CONNECT ${CONN.name}:443 → 200 → ClientHello → first answer byte → close. Load generator: ours (bench/loadgen.ts, one Node process).`,
    roundsNote(preset),
    'The gateway resolves through its cache (warm after the first tunnel), checks SNI and writes one audit line per tunnel and one on close.',
    'Proxy CPU: user + system time of the proxy process (/proc/PID/stat) during the point, per 1,000 tunnels opened.',
  );
  return { id: 'connect', title: 'Connection cost (new CONNECT tunnels)', columns, rows, notes };
}
