// `codex-egress status`: containers, gateway health, allowlist size, decision counters.
import { readEffective } from '../proxy/effective.js';
import { parse } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, out, json } from './common.js';
import { state, health, codexMode } from '../image/appliance.js';
import { liveProject } from '../image/subnet.js';
import { scanLog } from './auditlog.js';
import { statusLines, type StatusReport } from './status-view.js';

export const STATUS_USAGE = `Usage: codex-egress status [options]

A summary: running and healthy or not, uptime, the kernel firewall (on/off, interface, allowed ports,
allow set fill, drops by rule since the gateway started), the Codex sandbox mode, the number of
effective rules, the decisions counted in the audit log, the containers, and where the files are.
--json prints the whole report (the gateway's /healthz included).

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
  const { decisions, startedAt } = await scanLog(paths.auditLog);
  const report: StatusReport = {
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
    decisions,
    startedAt,
  };
  if (v.json) json(report);
  else for (const l of statusLines(report)) out(l);
  if (!report.running) return EXIT.notRunning;
  return report.healthy ? EXIT.ok : EXIT.error;
}
