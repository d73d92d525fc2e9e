// Reading the gateway's audit log (one JSON line per decision) for `logs` and `status`. Pure but for the file reads.
import { open, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';

export interface AuditLine {
  v?: number;
  time?: string;
  event?: string;
  decision?: string;
  reason?: string;
  [k: string]: unknown;
}

export function parseLine(line: string): AuditLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as AuditLine;
  } catch {
    return undefined;
  }
}

/** --since: a duration (90s, 10m, 2h, 1d) before now, or an ISO time. Returns epoch ms or throws. */
export function parseSince(value: string, now = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(value);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new Error(`--since must be a duration like 10m or 2h, or a time like 2026-01-31T12:00:00Z, not "${value}"`);
  return t;
}

export interface Filter {
  denied?: boolean;
  sinceMs?: number;
}

export function matches(e: AuditLine, f: Filter): boolean {
  if (f.denied && e.decision !== 'deny' && !(e.event === 'reload' && e.ok === false)) return false;
  if (f.sinceMs !== undefined && (!e.time || Date.parse(e.time) < f.sinceMs)) return false;
  return true;
}

const COLOURS = { red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', dim: '\x1b[2m', reset: '\x1b[0m' };

/** One human line per event; colour only when asked (a TTY). */
export function formatLine(e: AuditLine, colour: boolean): string {
  const c = (k: keyof typeof COLOURS, s: string) => (colour ? `${COLOURS[k]}${s}${COLOURS.reset}` : s);
  const time = (e.time ?? '').replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const decision = e.decision === 'allow' ? c('green', 'ALLOW') : e.decision === 'deny' ? c('red', 'DENY ') : e.decision ? c('yellow', String(e.decision).toUpperCase().padEnd(5)) : '     ';
  const rule = e.rule && typeof e.rule === 'object' ? (e.rule as { text?: string; source?: string }) : undefined;
  let what: string;
  switch (e.event) {
    case 'dns':
      what = `dns      ${e.name} ${e.qtype} → ${e.rcode}${Array.isArray(e.answers) && e.answers.length ? ` ${e.answers.join(',')}` : ''}`;
      break;
    case 'connect':
    case 'http':
      what = `${String(e.event).padEnd(8)} ${e.method ? `${e.method} ` : ''}${e.host}:${e.port}${e.ip ? ` (${e.ip})` : ''}${e.status ? ` ${e.status}` : ''}`;
      break;
    case 'tunnel_close':
      what = `closed   ${e.host}:${e.port} up ${e.bytes_up} B down ${e.bytes_down} B ${e.ms} ms by ${e.closed_by}`;
      break;
    case 'reload':
      what = `reload   ${e.ok ? 'ok' : 'REJECTED'} ${e.rules} rules${Array.isArray(e.added) && e.added.length ? ` +${e.added.join(' +')}` : ''}${Array.isArray(e.removed) && e.removed.length ? ` -${e.removed.join(' -')}` : ''}${Array.isArray(e.errors) ? ` ${e.errors.join('; ')}` : ''}`;
      break;
    default:
      what = `${String(e.event).padEnd(8)} ${JSON.stringify(Object.fromEntries(Object.entries(e).filter(([k]) => !['v', 'time', 'level', 'event'].includes(k))))}`;
  }
  const why = e.decision ? ` ${c('dim', `${e.reason ?? ''}${rule ? ` [${rule.text} from ${rule.source}]` : ''}${e.client ? ` client ${e.client}` : ''}`)}` : '';
  return `${c('dim', time)} ${decision} ${what}${why}`;
}

/** Read the log from a byte offset; returns the complete lines and the offset after the last one. */
export async function readFrom(path: string, offset: number): Promise<{ lines: string[]; offset: number }> {
  if (!existsSync(path)) return { lines: [], offset };
  const size = (await stat(path)).size;
  if (size < offset) offset = 0; // rotated or truncated
  if (size === offset) return { lines: [], offset };
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(size - offset);
    await fh.read(buf, 0, buf.length, offset);
    const text = buf.toString('utf8');
    const end = text.lastIndexOf('\n') + 1;
    return { lines: text.slice(0, end).split('\n').filter(Boolean), offset: offset + Buffer.byteLength(text.slice(0, end)) };
  } finally {
    await fh.close();
  }
}

/** Decisions counted by event and decision: { "connect": { "allow": 3, "deny": 1 }, … }. */
export function countDecisions(lines: string[]): Record<string, Record<string, number>> {
  const counts: Record<string, Record<string, number>> = {};
  for (const l of lines) {
    const e = parseLine(l);
    if (!e?.event || !e.decision) continue;
    const byEvent = (counts[e.event] ??= {});
    byEvent[e.decision] = (byEvent[e.decision] ?? 0) + 1;
  }
  return counts;
}
