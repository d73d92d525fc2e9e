// `codex-egress status`: containers, gateway health, allowlist size, decision counters.
import { readEffective } from '../proxy/effective.js';
import { parse } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, out, json } from './common.js';
import { state, health, codexMode } from '../image/appliance.js';
import { describeMode } from './up.js';
import { countLog } from './auditlog.js';
import { liveProject } from '../image/subnet.js';
import { printable } from './printable.js';

export const STATUS_USAGE = `Usage: codex-egress status [options]

Shows the project's containers and networks, the gateway's /healthz, the size of the effective allowlist,
the decisions counted in the audit log, and where the files are.

Options:
${WORKDIR_HELP}
  --json                  print as JSON
  -h, --help              this help

Exit codes: 0 running and healthy; 1 running but unhealthy; 2 usage; 4 not running.`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...workdirOptions, json: { type: 'boolean' } });
  const { project, paths } = projectFrom(v);
  const p = await liveProject(project);
  const s = await state(p);
  const gateway = s.containers.find((c) => c.name === p.gateway);
  const h = gateway?.running ? await health(p) : undefined;
  const effective = gateway?.running ? await readEffective(paths.effective) : undefined;
  const counters = await countLog(paths.auditLog);
  const report = {
    project: p.name,
    workdir: p.workdir,
    running: !!gateway?.running,
    healthy: h?.healthy === true,
    containers: s.containers,
    networks: s.networks,
    health: h ?? null,
    allowlist: { file: paths.allowlist, effective: paths.effective, rules: effective?.rules.length ?? null },
    auditLog: paths.auditLog,
    codexHome: paths.codexHome,
    runs: paths.runs,
    codexSandbox: s.containers.some((c) => c.name === p.sandbox) ? ((await codexMode(p)) ?? null) : null,
    decisions: counters,
  };
  if (v.json) json(report);
  else {
    out(`project    ${p.name} (${p.workdir})`);
    out(`state      ${report.running ? (report.healthy ? 'running, healthy' : 'running, NOT healthy') : 'not running'}`);
    for (const c of s.containers) out(printable(`container  ${c.name}: ${c.status}${c.health ? ` (${c.health})` : ''}`));
    for (const n of s.networks) out(`network    ${n}`);
    if (h) out(`firewall   ${printable(JSON.stringify(h.firewall))}`);
    out(`allowlist  ${paths.allowlist} (${report.allowlist.rules ?? '?'} effective rules: ${paths.effective})`);
    out(`audit log  ${paths.auditLog}`);
    out(`codex home ${paths.codexHome} · exec runs ${paths.runs}`);
    if (report.codexSandbox) out(`mode       ${describeMode(report.codexSandbox)}`);
    const c = Object.entries(counters).map(([ev, d]) => printable(`${ev} ${Object.entries(d).map(([k, n]) => `${k} ${n}`).join('/')}`));
    out(`decisions  ${c.join(', ') || 'none yet'}`);
  }
  if (!report.running) return EXIT.notRunning;
  return report.healthy ? EXIT.ok : EXIT.error;
}
