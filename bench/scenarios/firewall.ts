// Firewall sync: the DNS → ipset bridge. With a gateway that has the kernel firewall (--firewall), the
// added DNS delay is measured end to end (uncached answers with the firewall on vs off). Without one, a
// raw ipset stand-in is measured in the namespace (bench/ipsetbench.ts) and said so.
import { DOMAIN, PORTS } from '../env.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { type Ctx } from './common.js';
import { dnsperf, queryFile } from './dns.js';

interface Summ {
  p50: number;
  p99: number;
}

async function gatewayHasFirewall(ctx: Ctx): Promise<boolean | string> {
  await ctx.env.stopGateway();
  try {
    await ctx.env.startGateway({ firewall: true });
    return true;
  } catch (err) {
    return (err as Error).message.split('\n').find((l) => /firewall/i.test(l)) ?.trim() ?? 'gateway did not start with --firewall';
  }
}

export async function firewall(ctx: Ctx): Promise<ScenarioResult> {
  const { env, preset, log } = ctx;
  const rows: Row[] = [];
  const notes: string[] = [];
  const has = await gatewayHasFirewall(ctx).catch((e: Error) => e.message);
  if (has === true) {
    const uncached = (tag: string) =>
      queryFile(env.dir, `fw-${tag}`, (function* () {
        for (let i = 0; i < 20_000; i++) yield `f${i}-${tag}-${Date.now().toString(36)}.${DOMAIN}`;
      })());
    const on = await dnsperf(ctx, PORTS.gatewayDns, uncached('on'), ['-n', '1', '-Q', '500'], preset.dnsSeconds);
    await env.stopGateway();
    await env.startGateway();
    const off = await dnsperf(ctx, PORTS.gatewayDns, uncached('off'), ['-n', '1', '-Q', '500'], preset.dnsSeconds);
    log(`firewall: uncached DNS p50/p99 on ${on.p50}/${on.p99} ms, off ${off.p50}/${off.p99} ms`);
    rows.push(
      { metric: 'uncached DNS p50, firewall on', unit: 'ms', better: 'lower', values: { [OURS]: on.p50, 'firewall off': off.p50 } },
      { metric: 'uncached DNS p99, firewall on', unit: 'ms', better: 'lower', values: { [OURS]: on.p99, 'firewall off': off.p99 } },
      { metric: 'added DNS delay p99', unit: 'ms', better: 'lower', values: { [OURS]: on.p99 - off.p99 }, target: '≤ 5 ms', met: on.p99 - off.p99 <= 5 },
    );
    notes.push('Gateway with --firewall in the namespace; dnsperf paced at 500 q/s over names asked once each, firewall on vs off.');
    return { id: 'firewall', title: 'Firewall sync (DNS answer → ipset entry)', columns: [OURS, 'firewall off'], rows, notes };
  }
  await env.stopGateway().catch(() => undefined);
  await env.startGateway();
  notes.push(`STAND-IN: this build's gateway has no kernel firewall yet (${has}); measured instead: the raw cost of getting one address into an ipset (hash:ip, timeout entries) inside the namespace, ${preset.fwSamples} samples each.`);
  const r = await env.node<{ exec: Summ; interactive: Summ; restore: { perEntryMs: number; batch: number } }>('ipsetbench.js', { samples: preset.fwSamples }, 300_000);
  log(`firewall stand-in: exec ${r.exec.p50.toFixed(3)}/${r.exec.p99.toFixed(3)} ms, interactive ${r.interactive.p50.toFixed(3)}/${r.interactive.p99.toFixed(3)} ms, restore ${r.restore.perEntryMs.toFixed(4)} ms/entry`);
  const col = 'ipset (stand-in)';
  rows.push(
    { metric: 'one `ipset add` process per answer, p50', unit: 'ms', better: 'lower', values: { [col]: r.exec.p50 } },
    { metric: 'one `ipset add` process per answer, p99', unit: 'ms', better: 'lower', values: { [col]: r.exec.p99 }, target: '≤ 5 ms', met: r.exec.p99 <= 5 },
    { metric: 'long-lived `ipset -`, per add, p50', unit: 'ms', better: 'lower', values: { [col]: r.interactive.p50 } },
    { metric: 'long-lived `ipset -`, per add, p99', unit: 'ms', better: 'lower', values: { [col]: r.interactive.p99 }, target: '≤ 5 ms', met: r.interactive.p99 <= 5 },
    { metric: `\`ipset restore\` batch of ${r.restore.batch}, per entry`, unit: 'ms', better: 'lower', values: { [col]: r.restore.perEntryMs } },
  );
  notes.push('The added DNS delay of the real bridge is at least the per-add figure of whichever way the firewall module uses; rerun once `--firewall` lands (merge main) to measure it end to end.');
  return { id: 'firewall', title: 'Firewall sync (stand-in: raw ipset add cost)', columns: [col], rows, notes };
}
