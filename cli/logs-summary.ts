// `codex-egress logs summary`: what a session asked for, in two tables: the names refused most (with
// counts and the clients that asked) and the hosts that moved the most bytes (closed tunnels and
// WebSockets, both directions). Pure but for reading the log (streamed, rotated files included).
import { logEvents } from './auditlog.js';
import type { AuditLine } from './audit-line.js';
import { DeniedNames } from './suggest-rules.js';

export interface Summary {
  denied: Array<{ name: string; port?: number; count: number; clients: string[] }>;
  allowed: Array<{ host: string; port: number; bytes_up: number; bytes_down: number; connections: number }>;
}

/** Summarise audit lines: every refused name (any reason but a malformed one), every closed tunnel's bytes. */
export class Summariser {
  private readonly denied = new DeniedNames({ anyReason: true });
  private readonly hosts = new Map<string, Summary['allowed'][number]>();
  add(e: AuditLine): void {
    if (e.decision === 'deny') this.denied.add(e);
    if (e.event !== 'tunnel_close') return;
    const key = `${e.host}:${e.port}`;
    const h = this.hosts.get(key) ?? { host: String(e.host), port: Number(e.port), bytes_up: 0, bytes_down: 0, connections: 0 };
    h.bytes_up += Number(e.bytes_up) || 0;
    h.bytes_down += Number(e.bytes_down) || 0;
    h.connections++;
    this.hosts.set(key, h);
  }
  result(top: number): Summary {
    const denied = [...this.denied.asked.values()]
      .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name))
      .slice(0, top)
      .map((a) => ({ name: a.name, ...(a.port ? { port: a.port } : {}), count: a.count, clients: [...a.clients].sort() }));
    const allowed = [...this.hosts.values()]
      .sort((a, b) => b.bytes_up + b.bytes_down - (a.bytes_up + a.bytes_down) || a.host.localeCompare(b.host))
      .slice(0, top);
    return { denied, allowed };
  }
}

export async function summariseLog(path: string, sinceMs: number | undefined, top: number): Promise<Summary> {
  const s = new Summariser();
  for await (const e of logEvents(path, { sinceMs })) s.add(e);
  return s.result(top);
}

const bytes = (n: number) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export function summaryLines(s: Summary): string[] {
  const out = ['top denied names:'];
  if (!s.denied.length) out.push('  none');
  for (const d of s.denied)
    out.push(
      `  ${String(d.count).padStart(6)}  ${d.name}${d.port ? `:${d.port}` : ''}${d.clients.length ? `  (${d.clients.join(' ')})` : ''}`,
    );
  out.push('top allowed hosts by bytes:');
  if (!s.allowed.length) out.push('  none');
  for (const a of s.allowed)
    out.push(
      `  ${bytes(a.bytes_up + a.bytes_down).padStart(10)}  ${a.host}:${a.port}  (up ${bytes(a.bytes_up)}, down ${bytes(a.bytes_down)}, ${a.connections} connection${a.connections === 1 ? '' : 's'})`,
    );
  return out;
}
