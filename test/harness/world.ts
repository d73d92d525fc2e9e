// Test harness: the fake internet (test/fixtures/world.ts) and the real gateway, run inside a namespace.
import { execa } from 'execa';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns, Proc } from './netns.js';
import type { WorldConfig } from '../fixtures/world.js';
import { AUDIT_FLUSH_MS } from '../../proxy/audit.js';

/** The repository root (this file runs from dist/test/harness or test/harness). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
})();
export const CLI = join(ROOT, 'bin', 'codex-egress.js');
const WORLD = join(ROOT, 'dist', 'test', 'fixtures', 'world.js');

export function tempDir(prefix = 'codex-egress-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A self-signed certificate for the given names (subjectAltName), made with openssl. */
export async function makeCert(dir: string, names: string[]): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await execa('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${names[0]}`,
    '-addext',
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

export interface World {
  proc: Proc;
  /** Every query the fake upstream DNS received, in order. */
  queries(): Array<{ name: string; type: number; transport: 'udp' | 'tcp' }>;
  stop(): Promise<void>;
}

export async function startWorld(ns: Netns, dir: string, config: WorldConfig): Promise<World> {
  const queryLog = join(dir, `queries-${Date.now()}.jsonl`);
  writeFileSync(queryLog, '');
  const cfgPath = join(dir, `world-${Date.now()}.json`);
  writeFileSync(cfgPath, JSON.stringify({ queryLog, ...config }));
  const proc = ns.spawn(process.execPath, [WORLD, cfgPath]);
  await proc.waitFor(/world ready/);
  return {
    proc,
    queries: () =>
      readFileSync(queryLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    stop: () => proc.stop(),
  };
}

export interface AuditLine {
  event: string;
  v: number;
  [k: string]: unknown;
}

export interface RunningGateway {
  proc: Proc;
  auditPath: string;
  audit(): AuditLine[];
  /** Wait until an audit line satisfies the predicate (the log is written asynchronously). */
  waitForAudit(pred: (e: AuditLine) => boolean, timeoutMs?: number): Promise<AuditLine>;
  /**
   * The audit log once it has stopped growing: lines reach the file up to AUDIT_FLUSH_MS after their
   * decision, so a test that asserts a line is absent, or counts lines, reads it settled.
   */
  settledAudit(): Promise<AuditLine[]>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Start `codex-egress gateway` inside the namespace with the given arguments (audit log to a file). */
export async function startGatewayIn(ns: Netns, dir: string, args: string[], env: Record<string, string> = {}): Promise<RunningGateway> {
  const auditPath = join(dir, `audit-${Date.now()}.jsonl`);
  const proc = ns.spawn(process.execPath, [CLI, 'gateway', '--audit-log', auditPath, ...args], env);
  await proc.waitFor(/gateway up/);
  const audit = () =>
    existsSync(auditPath)
      ? readFileSync(auditPath, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as AuditLine)
      : [];
  return {
    proc,
    auditPath,
    audit,
    async waitForAudit(pred, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = audit().find(pred);
        if (hit) return hit;
        if (Date.now() > end)
          throw new Error(
            `no matching audit line in ${timeoutMs} ms; log:\n${audit()
              .map((e) => JSON.stringify(e))
              .join('\n')}`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    settledAudit: async () => {
      const size = () => (existsSync(auditPath) ? statSync(auditPath).size : 0);
      const end = Date.now() + 5000;
      let last = size();
      // Unchanged for five flush windows in a row (or 5 s: a gateway under load keeps writing).
      for (let quiet = 0; quiet < 5 && Date.now() < end;) {
        await new Promise((r) => setTimeout(r, AUDIT_FLUSH_MS));
        const now = size();
        quiet = now === last ? quiet + 1 : 0;
        last = now;
      }
      return audit();
    },
    stop: (signal) => proc.stop(signal),
  };
}

/**
 * The last total a drop rule's counter was reported at (`firewall` `drop` lines; 0 before any), from the
 * settled log. Rule ids name their family (`in-drop`, `in6-drop`: firewall/rules.ts).
 */
export async function dropTotal(gw: RunningGateway, rule: string): Promise<number> {
  const totals = (await gw.settledAudit())
    .filter((e) => e.event === 'firewall' && e.action === 'drop' && e.rule === rule)
    .map((e) => e.total_packets as number);
  return Math.max(0, ...totals);
}

export { resolve };
