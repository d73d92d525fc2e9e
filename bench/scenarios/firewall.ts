// Firewall sync: the DNS → ipset bridge. The resolver holds each answer until the firewall has put its
// addresses in the kernel allow set, so "upstream answer → entry present" is the DNS delay the firewall
// adds. Measured end to end with the gateway's --firewall in the namespace: uncached names, each
// answering with an address not yet in the set (so every answer needs a kernel add), firewall on vs off.
// Beside it, the raw cost of the ways to get one address into an ipset (bench/ipsetbench.ts).
import { join } from 'node:path';
import { startWorld } from '../../test/harness/world.js';
import { PORTS } from '../env.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { type Ctx } from './common.js';
import { dnsperf, queryFile, type DnsperfResult } from './dns.js';

interface Summ {
  p50: number;
  p99: number;
}

const FW_DNS = '198.51.100.54';
const ALLOW_SET = 'codex-egress-allow';

/** One distinct documentation address per name (762 of them): every answer is new to the allow set. */
function zone(): Record<string, { a: string[]; ttl: number }> {
  const z: Record<string, { a: string[]; ttl: number }> = {};
  let i = 0;
  for (const net of ['192.0.2', '198.51.100', '203.0.113']) {
    for (let h = 1; h <= 254; h++) z[`f${i++}.fw.bench.example`] = { a: [`${net}.${h}`], ttl: 300 };
  }
  return z;
}

export async function firewall(ctx: Ctx): Promise<ScenarioResult> {
  const { env, preset, log } = ctx;
  const rows: Row[] = [];
  const notes: string[] = [];
  const z = zone();
  const names = Object.keys(z).slice(0, preset.fwNames);
  const file = queryFile(env.dir, 'fw', names);
  const rate = 50;
  const seconds = Math.ceil(names.length / rate) + 2;
  let measured: { on: DnsperfResult; off: DnsperfResult; present: number } | undefined;
  let why = '';

  await env.ns.addLoopbackAddress(`${FW_DNS}/32`).catch(() => undefined);
  const world = await startWorld(env.ns, env.dir, {
    dns: [{ ip: FW_DNS, port: 53 }],
    zone: z,
    queryLog: join(env.dir, 'fw-queries.jsonl'),
  });
  try {
    await env.stopGateway();
    try {
      await env.startGateway({ firewall: true, upstream: FW_DNS });
    } catch (err) {
      why =
        (err as Error).message
          .split('\n')
          .find((l) => /firewall/i.test(l))
          ?.trim() ?? 'the gateway did not start with --firewall';
    }
    if (!why) {
      const on = await dnsperf(ctx, PORTS.gatewayDns, file, ['-n', '1', '-Q', String(rate)], seconds);
      const list = await env.run('ipset', ['list', ALLOW_SET], 10_000);
      const present = names.filter((n) => list.includes(`${z[n]!.a[0]} `)).length;
      await env.stopGateway();
      await env.run('sh', ['-c', 'iptables -F; iptables -X; ip6tables -F; ip6tables -X; ipset destroy 2>/dev/null; true'], 10_000);
      await env.startGateway({ upstream: FW_DNS });
      const off = await dnsperf(ctx, PORTS.gatewayDns, file, ['-n', '1', '-Q', String(rate)], seconds);
      measured = { on, off, present };
    }
  } finally {
    await world.stop();
    await env.stopGateway().catch(() => undefined);
    await env.startGateway();
  }

  if (measured) {
    const { on, off, present } = measured;
    log(
      `firewall: uncached DNS p50/p99 on ${on.p50.toFixed(3)}/${on.p99.toFixed(3)} ms, off ${off.p50.toFixed(3)}/${off.p99.toFixed(3)} ms; ${present}/${names.length} in the set`,
    );
    const col = { on: OURS, off: 'firewall off' };
    rows.push(
      { metric: 'uncached answer, p50', unit: 'ms', better: 'lower', values: { [col.on]: on.p50, [col.off]: off.p50 } },
      { metric: 'uncached answer, p99', unit: 'ms', better: 'lower', values: { [col.on]: on.p99, [col.off]: off.p99 } },
      { metric: 'added by the firewall (answer → set entry), p50', unit: 'ms', better: 'lower', values: { [col.on]: on.p50 - off.p50 } },
      {
        metric: 'added by the firewall (answer → set entry), p99',
        unit: 'ms',
        better: 'lower',
        values: { [col.on]: on.p99 - off.p99 },
        target: '≤ 5 ms',
        met: on.p99 - off.p99 <= 5,
      },
      { metric: 'answered addresses found in the set', unit: '%', better: 'higher', values: { [col.on]: (100 * present) / names.length } },
    );
    notes.push(
      `Gateway with --firewall (iptables + ipset in the namespace); ${names.length} names asked once each, paced at ${rate} q/s (dnsperf, slow enough that adds do not queue behind each other), each answering a different address, so every answer waits for a kernel add (the firewall batches the adds waiting at one moment into one \`ipset restore\`). "firewall off": the same names through a fresh --no-firewall gateway.`,
    );
  } else {
    notes.push(`STAND-IN ONLY: the gateway did not run with --firewall (${why}); only the raw ipset costs below were measured.`);
  }

  const r = await env.node<{ exec: Summ; interactive: Summ; restore: { perEntryMs: number; batch: number } }>(
    'ipsetbench.js',
    { samples: preset.fwSamples },
    300_000,
  );
  log(
    `ipset raw: exec ${r.exec.p50.toFixed(3)}/${r.exec.p99.toFixed(3)} ms, interactive ${r.interactive.p50.toFixed(3)}/${r.interactive.p99.toFixed(3)} ms, restore ${r.restore.perEntryMs.toFixed(4)} ms/entry`,
  );
  const raw = 'raw ipset';
  rows.push(
    { metric: 'raw: one `ipset` process per add, p50', unit: 'ms', better: 'lower', values: { [raw]: r.exec.p50 } },
    { metric: 'raw: one `ipset` process per add, p99', unit: 'ms', better: 'lower', values: { [raw]: r.exec.p99 } },
    { metric: 'raw: long-lived `ipset -`, per add, p50', unit: 'ms', better: 'lower', values: { [raw]: r.interactive.p50 } },
    { metric: 'raw: long-lived `ipset -`, per add, p99', unit: 'ms', better: 'lower', values: { [raw]: r.interactive.p99 } },
    {
      metric: `raw: \`ipset restore\` batch of ${r.restore.batch}, per entry`,
      unit: 'ms',
      better: 'lower',
      values: { [raw]: r.restore.perEntryMs },
    },
  );
  notes.push(
    `Raw ipset rows: ${preset.fwSamples} adds each in a scratch hash:ip set in the namespace, timed from Node (bench/ipsetbench.ts); the interactive mode's stdout is unbuffered with stdbuf so its prompt marks each add done.`,
  );
  return {
    id: 'firewall',
    title: 'Firewall sync (DNS answer → ipset entry)',
    columns: measured ? [OURS, 'firewall off', raw] : [raw],
    rows: measured ? rows : rows.filter((row) => row.metric.startsWith('raw')),
    notes,
  };
}
