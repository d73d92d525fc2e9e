// Watching the applied firewall: every few seconds, read the drop counters (an increase is a `firewall`
// audit event) and check that our rules are still exactly in place (if not, /healthz turns unhealthy and
// its `problem` names each chain that differs: firewall/compare.ts, the same comparison apply verifies with).
import type { Audit } from '../proxy/audit.js';
import type { Exec } from './apply.js';
import { parseCounters, parseSave, type Builtin, type DropRule } from './rules.js';
import { tableDifferences } from './compare.js';

export type Counter = { packets: number; bytes: number };

export interface RuleWatchOptions {
  exec: Exec;
  audit: Audit;
  drops: readonly DropRule[];
  /** The rules that must be in place, as generated. */
  v4: Record<Builtin, string[]>;
  v6: Record<Builtin, string[]>;
  pollMs: number;
}

export class RuleWatch {
  private readonly counters = new Map<string, Counter>();
  private readonly timer: NodeJS.Timeout;
  private polling: Promise<void> = Promise.resolve();
  /** Why the firewall is not as applied, or undefined when it is. */
  problem: string | undefined;

  private constructor(private readonly opts: RuleWatchOptions) {
    this.timer = setInterval(() => (this.polling = this.polling.then(() => this.poll())), opts.pollMs);
    this.timer.unref();
  }

  /** Start watching; the first read is done when this resolves. */
  static async start(opts: RuleWatchOptions): Promise<RuleWatch> {
    const w = new RuleWatch(opts);
    await w.poll();
    return w;
  }

  /** Packet and byte counts of every drop rule, by id. */
  drops(): Record<string, Counter> {
    return Object.fromEntries(this.opts.drops.map((r) => [r.id, this.counters.get(r.id) ?? { packets: 0, bytes: 0 }]));
  }

  /** Stop polling, after one last read (so drops up to now are audited). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    await this.poll();
  }

  private async poll(): Promise<void> {
    const { exec, audit } = this.opts;
    try {
      const v4 = await exec('iptables-save', ['-c', '-t', 'filter']);
      const v6 = await exec('ip6tables-save', ['-c', '-t', 'filter']);
      const now = new Map([...parseCounters(v4), ...parseCounters(v6)]);
      for (const rule of this.opts.drops) {
        const c = now.get(rule.id) ?? { packets: 0, bytes: 0 };
        const before = this.counters.get(rule.id) ?? { packets: 0, bytes: 0 };
        this.counters.set(rule.id, c);
        if (c.packets > before.packets) {
          audit.write({
            event: 'firewall',
            action: 'drop',
            rule: rule.id,
            family: rule.family,
            chain: rule.chain,
            target: rule.target,
            packets: c.packets - before.packets,
            bytes: c.bytes - before.bytes,
            total_packets: c.packets,
          });
        }
      }
      const changed = [
        ...tableDifferences('iptables', parseSave(v4), this.opts.v4),
        ...tableDifferences('ip6tables', parseSave(v6), this.opts.v6, 'DROP'),
      ];
      this.problem = changed.length ? `the firewall rules were changed by someone else: ${changed.join('; ')}` : undefined;
    } catch (err) {
      this.problem = `cannot read the firewall: ${(err as Error).message}`;
    }
  }
}
