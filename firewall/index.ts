// The gateway's kernel firewall: plan from the configuration, apply and verify before anything listens,
// fill the allow set from DNS answers, follow reloads, and report drop counters (/healthz and audit).
import type { Audit } from '../proxy/audit.js';
import type { GatewayConfig } from '../proxy/config.js';
import type { Firewall, FirewallFactory } from '../proxy/gateway.js';
import type { Allowlist } from '../proxy/policy/allowlist.js';
import type { Report } from '../proxy/report.js';
import { AllowSet, SetFullError } from './allowset.js';
import { IpsetSession, sessionExec } from './session.js';
import { applyFirewall, execDirect, FirewallError, interfaceExists, interfaceNetworks, interfaceOf, setPorts, type Exec } from './apply.js';
import { ALLOW_SET, allowedPorts, dropRules, v4Rules, v6Rules, type FirewallPlan } from './rules.js';
import { RuleWatch } from './watch.js';
import { poolFor } from '../proxy/transparent/pool.js';

/** The pool's CIDR when transparent mode is on (and its pool valid: the gateway refuses to start otherwise). */
const transparentPool = (cfg: GatewayConfig): string | undefined => {
  const p = poolFor(cfg);
  return p?.ok ? p.cidr : undefined;
};

export { FirewallError } from './apply.js';

/** Allow-set entries live at least this long (seconds), so a connection right after the answer works. */
export const MIN_SET_TTL = 60;
/** ... and at most this long (the resolver caches an hour at most, too). */
export const MAX_SET_TTL = 3600;

export interface FirewallOptions {
  exec?: Exec;
  /** How often drop counters are read (ms). */
  pollMs?: number;
}

/** Which interface faces the sandbox: the flag, or the interface holding the --listen address. */
async function sandboxInterface(cfg: GatewayConfig, exec: Exec): Promise<string> {
  if (cfg.sandboxInterface) {
    if (!(await interfaceExists(cfg.sandboxInterface, exec)))
      throw new FirewallError(`--sandbox-interface ${cfg.sandboxInterface}: no such interface`);
    return cfg.sandboxInterface;
  }
  if (cfg.listen === '0.0.0.0') {
    throw new FirewallError(
      'the firewall needs the sandbox-facing interface: give --sandbox-interface IF, or --listen with the sandbox-facing address',
    );
  }
  const found = await interfaceOf(cfg.listen, exec);
  if (!found) throw new FirewallError(`--listen ${cfg.listen}: no interface has this address`);
  return found;
}

export function planFor(cfg: GatewayConfig, iface: string, sandboxSources?: readonly string[]): FirewallPlan {
  return {
    sandboxInterface: iface,
    ...(sandboxSources ? { sandboxSources } : {}),
    listen: cfg.listen,
    dnsPort: cfg.dnsPort,
    proxyPort: cfg.proxyPort,
    upstreams: cfg.upstreams,
    setSize: cfg.firewallSetSize,
    minTtl: MIN_SET_TTL,
    ...(transparentPool(cfg) ? { transparentPool: transparentPool(cfg) } : {}),
  };
}

/** Apply the firewall for this configuration and return the gateway's handle on it. Throws FirewallError. */
export async function startFirewall(
  cfg: GatewayConfig,
  audit: Audit,
  allowlist: Allowlist,
  report: Report,
  opts: FirewallOptions = {},
): Promise<Firewall> {
  const exec = opts.exec ?? execDirect;
  const started = performance.now();
  const iface = await sandboxInterface(cfg, exec);
  // Only the sandbox side's own networks may send from the sandbox interface (no forged sources).
  const sources = await interfaceNetworks(iface, exec);
  if (!sources.length) throw new FirewallError(`${iface}: the sandbox interface has no IPv4 address`);
  const plan = planFor(cfg, iface, sources);
  let ports = allowedPorts(allowlist);
  const applied = await applyFirewall(plan, ports, exec);
  // The allow set's adds go to a long-lived `ipset -` (no process spawn per DNS answer); an injected
  // exec (tests) is used as it is.
  const session = opts.exec ? undefined : new IpsetSession();
  const setExec = session ? sessionExec(session, exec) : exec;
  const set = new AllowSet({ size: plan.setSize, minTtl: MIN_SET_TTL, maxTtl: MAX_SET_TTL, exec: setExec });
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
    report('note: IPv6 could not be disabled by sysctl here; ip6tables drops all IPv6 instead');
  }

  const watch = await RuleWatch.start({
    exec,
    audit,
    drops: [...dropRules(v4Rules(plan), 'ipv4'), ...dropRules(v6Rules(), 'ipv6')],
    v4: v4Rules(plan),
    v6: v6Rules(),
    pollMs: opts.pollMs ?? 2000,
  });
  /** Set when a reload could not be followed in the kernel; cleared by the next one that is. */
  let reloadProblem: string | undefined;
  /** The allowlist in force (onReload runs in the same tick as the gateway switching to it). */
  let current = allowlist;
  const problem = () => watch.problem ?? reloadProblem;

  return {
    async onResolved(name, ips, ttl) {
      // An answer whose lookup began before a reload that removed its name must not put the address
      // back after the reload flushed it (the caller refuses the answer: SERVFAIL / 502).
      if (!current.decide(name, 'dns').allow) throw new FirewallError(`${name} is no longer allowed (the allowlist was reloaded)`);
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
      // it is reported (report, /healthz unhealthy) rather than taking the gateway down.
      current = next;
      try {
        const nextPorts = allowedPorts(next);
        if (nextPorts.join(',') !== ports.join(',')) await setPorts(nextPorts, exec);
        ports = nextPorts;
        const flushed = await set.forget((name) => !next.decide(name, 'dns').allow);
        reloadProblem = undefined;
        audit.write({ event: 'firewall', action: 'reload', ports, flushed });
      } catch (err) {
        reloadProblem = `the firewall did not follow the last reload: ${(err as Error).message}`;
        report(reloadProblem);
      }
    },
    status() {
      const p = problem();
      return {
        up: !p,
        ...(p ? { problem: p } : {}),
        interface: plan.sandboxInterface,
        ports,
        set: { name: ALLOW_SET, entries: set.size, size: plan.setSize },
        ipv6: { policy: 'DROP', sysctl_disabled: applied.ipv6Disabled },
        drops: watch.drops(),
      };
    },
    async stop() {
      // The rules stay: a stopped gateway leaves the namespace closed (fail closed). teardownFirewall()
      // (firewall/apply.ts) removes them on purpose.
      await watch.stop();
      session?.close();
      audit.write({ event: 'firewall', action: 'stop', rules_kept: true });
    },
  };
}

/** The factory the `gateway` command passes to startGateway. */
export const firewallFactory =
  (opts: FirewallOptions = {}): FirewallFactory =>
  (cfg, audit, allowlist, report) =>
    startFirewall(cfg, audit, allowlist, report, opts);
