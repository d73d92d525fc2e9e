// The gateway's kernel firewall: plan from the configuration, apply and verify before anything listens,
// fill the allow set from DNS answers, follow reloads, and report drop counters (/healthz and audit).
import type { Audit } from '../proxy/audit.js';
import type { GatewayConfig } from '../proxy/config.js';
import type { Firewall, FirewallFactory } from '../proxy/gateway.js';
import type { Allowlist } from '../proxy/policy/allowlist.js';
import { AllowSet, SetFullError } from './allowset.js';
import { applyFirewall, execDirect, FirewallError, interfaceExists, interfaceOf, setPorts, type Exec } from './apply.js';
import { ALLOW_SET, allowedPorts, dropRules, parseCounters, parseSave, v4Rules, v6Rules, BUILTINS, type Builtin, type FirewallPlan, type SavedTable } from './rules.js';

export { FirewallError } from './apply.js';

/** Allow-set entries live at least this long (seconds), so a connection right after the answer works. */
export const MIN_SET_TTL = 60;
/** ... and at most this long (the resolver caches an hour at most, too). */
export const MAX_SET_TTL = 3600;
export const DEFAULT_SET_SIZE = 65_536;

export interface FirewallOptions {
  exec?: Exec;
  /** How often drop counters are read (ms). */
  pollMs?: number;
}

/** Which interface faces the sandbox: the flag, or the interface holding the --listen address. */
async function sandboxInterface(cfg: GatewayConfig, exec: Exec): Promise<string> {
  if (cfg.sandboxInterface) {
    if (!(await interfaceExists(cfg.sandboxInterface, exec))) throw new FirewallError(`--sandbox-interface ${cfg.sandboxInterface}: no such interface`);
    return cfg.sandboxInterface;
  }
  if (cfg.listen === '0.0.0.0') {
    throw new FirewallError('the firewall needs the sandbox-facing interface: give --sandbox-interface IF, or --listen with the sandbox-facing address');
  }
  const found = await interfaceOf(cfg.listen, exec);
  if (!found) throw new FirewallError(`--listen ${cfg.listen}: no interface has this address`);
  return found;
}

export function planFor(cfg: GatewayConfig, iface: string): FirewallPlan {
  return {
    sandboxInterface: iface,
    listen: cfg.listen,
    dnsPort: cfg.dnsPort,
    proxyPort: cfg.proxyPort,
    upstreams: cfg.upstreams,
    setSize: cfg.firewallSetSize,
    minTtl: MIN_SET_TTL,
  };
}

/** Apply the firewall for this configuration and return the gateway's handle on it. Throws FirewallError. */
export async function startFirewall(cfg: GatewayConfig, audit: Audit, allowlist: Allowlist, opts: FirewallOptions = {}): Promise<Firewall> {
  const exec = opts.exec ?? execDirect;
  const started = performance.now();
  const plan = planFor(cfg, await sandboxInterface(cfg, exec));
  let ports = allowedPorts(allowlist);
  const applied = await applyFirewall(plan, ports, exec);
  const set = new AllowSet({ size: plan.setSize, minTtl: MIN_SET_TTL, maxTtl: MAX_SET_TTL, exec });
  const drops = [...dropRules(v4Rules(plan), 'ipv4'), ...dropRules(v6Rules(), 'ipv6')];
  audit.write({
    event: 'firewall',
    action: 'applied',
    interface: plan.sandboxInterface,
    ports,
    set: ALLOW_SET,
    set_size: plan.setSize,
    upstreams: plan.upstreams.map((u) => `${u.host}:${u.port}`),
    ipv6_sysctl: applied.ipv6Disabled,
    ms: Math.round(performance.now() - started),
  });
  if (!applied.ipv6Disabled) {
    process.stderr.write('codex-egress: note: IPv6 could not be disabled by sysctl here; ip6tables drops all IPv6 instead\n');
  }

  // Drop counters: read every pollMs; an increase is a `firewall` audit event. The same read checks that
  // our rules are still in place (anything else changing them makes /healthz unhealthy).
  const counters = new Map<string, { packets: number; bytes: number }>();
  let intact = true;
  let problem: string | undefined;
  let reloadProblem: string | undefined;
  const poll = async () => {
    try {
      const v4 = await exec('iptables-save', ['-c', '-t', 'filter']);
      const v6 = await exec('ip6tables-save', ['-c', '-t', 'filter']);
      const now = new Map([...parseCounters(v4), ...parseCounters(v6)]);
      for (const rule of drops) {
        const c = now.get(rule.id) ?? { packets: 0, bytes: 0 };
        const before = counters.get(rule.id) ?? { packets: 0, bytes: 0 };
        counters.set(rule.id, c);
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
      const tampered = !unchanged(parseSave(v4), v4Rules(plan)) || !unchanged(parseSave(v6), v6Rules(), 'DROP');
      problem = tampered ? 'the firewall rules were changed by someone else' : reloadProblem;
      intact = !problem;
    } catch (err) {
      intact = false;
      problem = `cannot read the firewall: ${(err as Error).message}`;
    }
  };
  await poll();
  let polling = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling.then(poll);
  }, opts.pollMs ?? 2000);
  timer.unref();

  return {
    async onResolved(name, ips, ttl) {
      try {
        await set.add(name, ips, ttl);
      } catch (err) {
        if (err instanceof SetFullError) {
          audit.write({ event: 'firewall', action: 'set-full', name, ips: [...ips], set_size: plan.setSize });
        }
        throw err;
      }
    },
    async onReload(next) {
      // A failure here leaves the kernel stricter or as before (the proxy applies the new list anyway);
      // it is reported as unhealthy rather than taking the gateway down.
      try {
        const nextPorts = allowedPorts(next);
        if (nextPorts.join(',') !== ports.join(',')) await setPorts(nextPorts, exec);
        ports = nextPorts;
        const flushed = await set.forget((name) => !next.decide(name, 'dns').allow);
        reloadProblem = undefined;
        audit.write({ event: 'firewall', action: 'reload', ports, flushed });
      } catch (err) {
        reloadProblem = `the firewall did not follow the last reload: ${(err as Error).message}`;
        intact = false;
        problem = reloadProblem;
        process.stderr.write(`codex-egress: ${reloadProblem}\n`);
      }
    },
    status() {
      return {
        up: intact,
        ...(problem ? { problem } : {}),
        interface: plan.sandboxInterface,
        ports,
        set: { name: ALLOW_SET, entries: set.size, size: plan.setSize },
        ipv6: { policy: 'DROP', sysctl_disabled: applied.ipv6Disabled },
        drops: Object.fromEntries(drops.map((r) => [r.id, counters.get(r.id) ?? { packets: 0, bytes: 0 }])),
      };
    },
    async stop() {
      // The rules stay: a stopped gateway leaves the namespace closed (fail closed). teardownFirewall()
      // removes them on purpose.
      clearInterval(timer);
      await polling;
      await poll();
      audit.write({ event: 'firewall', action: 'stop', rules_kept: true });
    },
  };
}

/** Are our chains in place, once each and first, with exactly the planned rules (and policies)? */
function unchanged(saved: SavedTable, want: Record<Builtin, string[]>, policy?: string): boolean {
  return BUILTINS.every(
    (b) => saved.jumps[b] === 1 && saved.jumpFirst[b] && saved.rules[b].join('\n') === want[b].join('\n') && (!policy || saved.policies[b] === policy),
  );
}

/** The factory the `gateway` command passes to startGateway. */
export const firewallFactory =
  (opts: FirewallOptions = {}): FirewallFactory =>
  (cfg, audit, allowlist) =>
    startFirewall(cfg, audit, allowlist, opts);
