// Transparent mode (proxy/transparent/) beside CONNECT: the same bulk download and the same new-connection
// loop, once through a CONNECT tunnel and once straight to the name's pool address (no proxy settings).
// Both go through the same gateway (restarted with --transparent), the same checks and the same audit.
import { BULK, CONN, LISTEN, PORTS } from '../env.js';
import { median } from '../stats.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { interleaved, medians, roundsNote, type Ctx } from './common.js';

const TP = 'transparent';

export async function transparent({ env, preset, log }: Ctx): Promise<ScenarioResult> {
  const rows: Row[] = [];
  const notes: string[] = [];
  await env.stopGateway();
  try {
    await env.startGateway({ extraArgs: ['--transparent'] });
    const poolOf = async (name: string) => {
      const out = (
        await env.run('dig', ['+short', '+time=2', '+tries=1', '-p', String(PORTS.gatewayDns), `@${LISTEN}`, name, 'A'], 10_000)
      ).trim();
      if (!/^127\.0\.0\.\d+$/.test(out)) throw new Error(`transparent: ${name} answered ${JSON.stringify(out)}, not a pool address`);
      return out;
    };
    const bulkAt = await poolOf(BULK.name);
    const connAt = await poolOf(CONN.name);
    log(`transparent: ${BULK.name} → ${bulkAt}, ${CONN.name} → ${connAt}`);
    const paths = [
      { name: OURS, via: `${LISTEN}:${PORTS.gatewayProxy}`, bulk: `${BULK.ip}:${BULK.port}`, conn: `${CONN.ip}:${CONN.port}` },
      { name: TP, via: 'direct', bulk: `${bulkAt}:${BULK.port}`, conn: `${connAt}:${CONN.port}` },
      { name: 'direct', via: 'direct', bulk: `${BULK.ip}:${BULK.port}`, conn: `${CONN.ip}:${CONN.port}` },
    ];
    const runs: Record<string, number[]> = {};
    for (let rep = 0; rep < preset.bulkReps; rep++) {
      for (const p of paths) {
        const r = await env.node<{ MBps: number }>(
          'loadgen.js',
          { mode: 'bulk', via: p.via, target: p.bulk, name: BULK.name, bytes: preset.bulkBytes },
          120_000,
        );
        (runs[p.name] ??= []).push(r.MBps);
        log(`transparent bulk ${p.name} rep ${rep + 1}: ${r.MBps.toFixed(0)} MB/s`);
      }
    }
    rows.push({
      metric: 'tunnel throughput',
      unit: 'MB/s',
      better: 'higher',
      values: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)])),
    });
    for (const c of preset.concurrency.slice(0, 2)) {
      const load = (p: (typeof paths)[number], ms: number) =>
        env.node<{ perSec: number; errors: number; lastError: string; latencyMs: { p50: number } }>(
          'loadgen.js',
          { mode: 'connect', via: p.via, target: p.conn, name: CONN.name, concurrency: c, durationMs: ms },
          ms + 60_000,
        );
      const rounds = await interleaved(paths, preset, load, async (p) => {
        const r = await load(p, preset.connectMs);
        log(`transparent connect c=${c} ${p.name}: ${r.perSec.toFixed(0)}/s p50 ${r.latencyMs.p50.toFixed(3)} ms errors ${r.errors}`);
        if (r.errors) notes.push(`c=${c} ${p.name}: ${r.errors} failed connections (last: ${r.lastError})`);
        return r;
      });
      rows.push(
        { metric: `new connections/s, c=${c}`, unit: '/s', better: 'higher', values: medians(rounds, (r) => r.perSec) },
        { metric: `connect → first answer byte p50, c=${c}`, unit: 'ms', better: 'lower', values: medians(rounds, (r) => r.latencyMs.p50) },
      );
    }
  } finally {
    await env.stopGateway().catch(() => undefined);
    await env.startGateway();
  }
  notes.push(
    `"${OURS}": through a CONNECT tunnel; "${TP}": the same gateway with --transparent, the client connecting straight to the name's pool address (its DNS answer) and sending the ClientHello, as a tool without proxy settings does; "direct": no gateway.`,
    'Both paths are the same code after the first bytes arrive (admit, dial, SNI check, relay, audit); transparent saves the CONNECT round trip.',
    `Connection points: ${roundsNote(preset)}`,
  );
  return { id: 'transparent', title: 'Transparent mode beside CONNECT', columns: [OURS, TP, 'direct'], rows, notes };
}
