// The audit log: one JSON line per decision, written by pino's destination asynchronously (never blocks the proxy path).
import { pino } from 'pino';
import type { RuleRef } from './policy/allowlist.js';
import type { ClosedBy, Reason } from './reasons.js';
import { AuditFile, ROTATION_DEFAULTS, type RotationOptions } from './audit-file.js';
import { Summariser, SUMMARY_DEFAULTS, type RepeatEvent, type SummaryOptions, type SuppressedEvent } from './audit-summary.js';
import type { Report } from './report.js';

/** Schema version carried in every line as `v`. Bump on any incompatible change (README: Audit log). */
export const AUDIT_SCHEMA_VERSION = 1;

export type AuditEvent =
  | {
      event: 'dns';
      client: string;
      name: string;
      qtype: string;
      decision: 'allow' | 'deny';
      reason: Reason;
      rcode: string;
      answers: string[];
      /** Transparent mode: the upstream's addresses behind the pool address in `answers`. */
      resolved?: string[];
      rule?: RuleRef;
      ms: number;
    }
  | {
      event: 'connect' | 'http';
      client: string;
      host: string;
      port: number;
      ip?: string;
      method?: string;
      decision: 'allow' | 'deny' | 'error';
      reason: Reason;
      rule?: RuleRef;
      status?: number;
      detail?: string;
      /** `transparent`: the client connected to a pool address (proxy/transparent/); absent: CONNECT or a proxy request. */
      mode?: 'transparent';
      /** Credential injection (proxy/inject): the tunnel was terminated by the gateway for this credential. */
      intercepted?: boolean;
      /** What the request carried in the credential's header; the credential's name, never its value. */
      credential?: 'injected' | 'foreign' | 'absent' | 'duplicate';
      credential_name?: string;
    }
  | {
      event: 'tunnel_close';
      client: string;
      host: string;
      port: number;
      ip: string;
      bytes_up: number;
      bytes_down: number;
      ms: number;
      closed_by: ClosedBy;
      mode?: 'transparent';
    }
  | {
      event: 'reload';
      ok: boolean;
      rules: number;
      added: string[];
      removed: string[];
      errors?: string[];
      closed_tunnels?: number;
      released?: string[];
    }
  | { event: 'start'; dns: string; proxy: string; firewall: boolean; rules: number; upstreams: string[]; transparent?: string }
  | { event: 'stop'; signal?: string; forced?: boolean }
  | FirewallAuditEvent;

/**
 * What the kernel firewall did (README: Audit log, `firewall` events):
 * - applied: the rules were applied and verified at start;
 * - drop: a drop/reject rule's packet counter rose since the last read (`rule` is its id);
 * - set-full: the allow set had no room for an answer's addresses, so the answer was refused;
 * - reload: the allowlist changed: the allowed ports now, and the addresses flushed from the allow set;
 * - stop: the gateway stopped; the rules stay in place (fail closed).
 */
export type FirewallAuditEvent =
  | {
      event: 'firewall';
      action: 'applied';
      interface: string;
      ports: number[];
      set: string;
      set_size: number;
      upstreams: string[];
      ipv6_sysctl: boolean;
      ms: number;
    }
  | {
      event: 'firewall';
      action: 'drop';
      rule: string;
      family: 'ipv4' | 'ipv6';
      chain: 'INPUT' | 'FORWARD' | 'OUTPUT';
      target: 'DROP' | 'REJECT';
      packets: number;
      bytes: number;
      total_packets: number;
    }
  | { event: 'firewall'; action: 'set-full'; name: string; ips: string[]; set_size: number }
  | { event: 'firewall'; action: 'reload'; ports: number[]; flushed: string[] }
  | { event: 'firewall'; action: 'stop'; rules_kept: boolean };

export interface Audit {
  write(e: AuditEvent): void;
  /**
   * Write pending summaries and everything buffered, and close the destination (resolved once the file
   * has it all; later calls return the same promise, later writes are dropped).
   */
  close(): Promise<void>;
}

export interface AuditOptions {
  rotation?: RotationOptions;
  summary?: SummaryOptions;
}

/** How long a line may wait in memory before it is written (lines are written together: one write each time). */
export const AUDIT_FLUSH_MS = 20;
/** Written at once when this many bytes of lines are waiting. */
const AUDIT_BATCH_BYTES = 8192;

let isoSecond = NaN;
let isoPrefix = '';
/**
 * Date#toISOString for a time in ms, its `YYYY-MM-DDTHH:MM:SS.` part made once a second (formatting a
 * Date costs more than the rest of an audit line).
 */
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(second * 1000).toISOString();
    // Only the usual form (four-digit year) is cut; any other is formatted whole.
    if (full.length !== 24) return new Date(ms).toISOString();
    isoSecond = second;
    isoPrefix = full.slice(0, 20);
  }
  const f = ms - second * 1000;
  return `${isoPrefix}${f < 10 ? '00' : f < 100 ? '0' : ''}${f}Z`;
}

/**
 * One audit line: pino's line format (`level`, `time`, `v`, then the event's fields) built with one
 * JSON.stringify. pino's logger did the same in about four times the CPU (its serialiser walks every
 * field), which was a tenth of the gateway's CPU per tunnel (README: Performance).
 */
export function auditLine(e: AuditEvent | RepeatEvent | SuppressedEvent, now = Date.now()): string {
  const level = e.event === 'reload' && !e.ok ? 'error' : 'info';
  // Every event has fields (`event` at least): its JSON without the opening brace follows ours.
  return `{"level":"${level}","time":"${isoTime(now)}","v":${AUDIT_SCHEMA_VERSION},${JSON.stringify(e).slice(1)}\n`;
}

/**
 * An audit log to a file path (rotated by size), or to standard output with '-'. Repeated denials are
 * summarised (proxy/audit-summary.ts); the summaries are flushed each window, before the `stop` line and
 * on close. Lines are held here and handed to pino's asynchronous destination together, as one string:
 * at most AUDIT_FLUSH_MS after they happened, or as soon as AUDIT_BATCH_BYTES wait (one write for many
 * lines); stop and close write everything first. A failing destination (disk full, closed pipe) is
 * reported, never fatal.
 */
export function createAudit(path: string, report: Report, opts: AuditOptions = {}): Audit {
  // A failing log destination must not take the gateway down.
  const onError = (err: Error) => report(`audit log: ${err.message}`);
  let dest: ReturnType<typeof pino.destination>;
  let file: AuditFile | undefined;
  if (path === '-') {
    dest = pino.destination({ dest: 1, sync: false });
    dest.on('error', onError);
  } else {
    file = new AuditFile(path, opts.rotation ?? ROTATION_DEFAULTS, onError);
    dest = file.dest;
  }
  // Lines not yet handed to the destination. Held here, not in the destination: it measures the bytes of
  // everything it holds at each write (a string it keeps joining), which cost more than the lines.
  let held = '';
  // One timer while lines wait (none while the log is idle): what is still held is written when it fires.
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    if (!held) return;
    const lines = held;
    held = '';
    try {
      dest.write(lines);
    } catch (err) {
      onError(err as Error);
    }
  };
  const summary = new Summariser((e) => {
    held += auditLine(e);
    if (held.length >= AUDIT_BATCH_BYTES) flush();
    else if (!flushTimer) {
      flushTimer = setTimeout(flush, AUDIT_FLUSH_MS);
      flushTimer.unref();
    }
  }, opts.summary ?? SUMMARY_DEFAULTS);
  const timer = setInterval(() => summary.tick(), (opts.summary ?? SUMMARY_DEFAULTS).windowMs);
  timer.unref();
  let closing: Promise<void> | undefined;
  const close = async () => {
    clearInterval(timer);
    summary.flush();
    flush();
    // Resolved once everything is written (pino's flush() returns before that): end() writes what is
    // buffered, then closes (standard output's descriptor stays open). Bounded: a destination that never
    // closes is reported.
    const ended = file
      ? file.end()
      : new Promise<void>((resolve) => {
          dest.once('close', () => resolve());
          dest.end();
        });
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      ended,
      new Promise<void>((resolve) => {
        timeout = setTimeout(() => {
          onError(new Error('the audit log did not close within 5 s'));
          resolve();
        }, 5000);
      }),
    ]);
    clearTimeout(timeout);
  };
  return {
    write: (e) => {
      if (!closing) summary.write(e);
    },
    close: () => (closing ??= close()),
  };
}
