// `status` for people: what is running, whether the kernel enforces the allowlist, how full the allow set
// is, what the firewall dropped, the Codex sandbox mode, uptime. Pure: the report in, lines out (every
// string from the gateway or the log escaped). `status --json` prints the report itself.
import { printable } from './printable.js';
import { describeMode } from './up.js';
import type { DecisionCounts } from './auditlog.js';

export interface StatusReport {
  project: string;
  workdir: string;
  running: boolean;
  healthy: boolean;
  containers: Array<{ name: string; status: string; health?: string }>;
  networks: string[];
  health: Record<string, unknown> | null;
  allowlist: { file: string; effective: string; rules: number | null };
  auditLog: string;
  codexHome: string;
  runs: string;
  codexSandbox: { mode: string; user?: string } | null;
  decisions: DecisionCounts;
  /** The gateway's last `start` audit line. */
  startedAt: string | null;
}

/** 0 s, 42 s, 5 min, 2 h 5 min, 3 d 4 h */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

interface FirewallHealth {
  up?: boolean;
  disabled?: boolean;
  problem?: string;
  interface?: string;
  ports?: number[];
  set?: { name?: string; entries?: number; size?: number };
  drops?: Record<string, { packets?: number; bytes?: number }>;
}

export function firewallLines(fw: FirewallHealth | undefined): string[] {
  if (!fw) return ['firewall   unknown (no answer from the gateway)'];
  if (fw.disabled) return ['firewall   OFF (--no-firewall): the kernel does not enforce the allowlist'];
  const state = fw.up ? 'on, verified' : `NOT in place${fw.problem ? `: ${fw.problem}` : ''}`;
  const set = fw.set
    ? `allow set ${fw.set.entries ?? '?'}/${fw.set.size ?? '?'}${fw.set.size ? ` (${(((fw.set.entries ?? 0) / fw.set.size) * 100).toFixed(1)}% full)` : ''}`
    : '';
  const lines = [
    [`firewall   ${state}`, fw.interface ? `interface ${fw.interface}` : '', fw.ports ? `ports ${fw.ports.join(', ') || 'none'}` : '', set]
      .filter(Boolean)
      .join(' · '),
  ];
  const drops = Object.entries(fw.drops ?? {}).filter(([, c]) => (c.packets ?? 0) > 0);
  lines.push(
    `drops      ${drops.length ? drops.map(([id, c]) => `${id} ${c.packets} packets`).join(', ') : 'none'} since the gateway started`,
  );
  return lines;
}

export function statusLines(r: StatusReport, now = Date.now()): string[] {
  const state = r.running ? (r.healthy ? 'running, healthy' : 'running, NOT healthy') : 'not running';
  const up = r.running && r.startedAt ? ` · up ${duration(now - Date.parse(r.startedAt))}` : '';
  const lines = [`project    ${r.project} (${r.workdir})`, `state      ${state}${up}`];
  if (r.running) lines.push(...firewallLines((r.health?.firewall as FirewallHealth | undefined) ?? undefined));
  if (r.codexSandbox) lines.push(`sandbox    ${describeMode(r.codexSandbox)}`);
  lines.push(`allowlist  ${r.allowlist.rules ?? '?'} effective rules ("codex-egress domains") · file ${r.allowlist.file}`);
  const c = Object.entries(r.decisions).map(
    ([ev, d]) =>
      `${ev} ${Object.entries(d)
        .map(([k, n]) => `${k} ${n}`)
        .join('/')}`,
  );
  lines.push(`decisions  ${c.join(', ') || 'none yet'}`);
  for (const x of r.containers) lines.push(`container  ${x.name}: ${x.status}${x.health ? ` (${x.health})` : ''}`);
  for (const n of r.networks) lines.push(`network    ${n}`);
  lines.push(`audit log  ${r.auditLog}`, `codex home ${r.codexHome} · exec runs ${r.runs}`);
  return lines.map(printable);
}
