// The audit log: one JSON line per decision, written by pino asynchronously (never blocks the proxy path).
import { pino, type Logger } from 'pino';
import type { RuleRef } from './policy/allowlist.js';
import type { ClosedBy, Reason } from './reasons.js';

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
    }
  | { event: 'reload'; ok: boolean; rules: number; added: string[]; removed: string[]; errors?: string[]; closed_tunnels?: number }
  | { event: 'start'; dns: string; proxy: string; firewall: boolean; rules: number; upstreams: string[] }
  | { event: 'stop'; signal?: string }
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
  /** Flush what is buffered and close the destination. */
  close(): Promise<void>;
}

/** An audit log to a file path, or to standard output with '-'. */
export function createAudit(path: string): Audit {
  const dest = pino.destination({ dest: path === '-' ? 1 : path, sync: false, mkdir: path !== '-' });
  const logger: Logger = pino(
    {
      base: { v: AUDIT_SCHEMA_VERSION },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  // A failing log destination (disk full, closed pipe) must not take the gateway down.
  dest.on('error', (err: Error) => process.stderr.write(`codex-egress: audit log: ${err.message}\n`));
  return {
    write: (e) => (e.event === 'reload' && !e.ok ? logger.error(e) : logger.info(e)),
    close: () =>
      new Promise((resolve) => {
        dest.flush((_err?: Error) => {
          if (path === '-') return resolve();
          dest.end();
          resolve();
        });
      }),
  };
}
