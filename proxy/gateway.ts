// Wiring: configuration → firewall → DNS and proxy servers; live reload; graceful stop.
import { networkInterfaces } from 'node:os';
import { isReachable, notOwnAddress } from './address.js';
import { readOnce, watchFile, type FileRead } from './watch-file.js';
import { createAudit, type Audit } from './audit.js';
import { loadAllowlist, writeEffective, ConfigError, type GatewayConfig } from './config.js';
import { Resolver, type OnResolved } from './dns/resolver.js';
import { UpstreamClient } from './dns/upstream.js';
import { startDnsServer, type DnsServer } from './dns/server.js';
import { startProxy, type ProxyServer } from './http/proxy.js';
import { loadInject } from './inject/load.js';
import { injectSummary } from './inject/tunnel.js';
import type { Allowlist } from './policy/allowlist.js';
import { startTransparentMode, type TransparentMode } from './transparent/mode.js';
import { poolFor } from './transparent/pool.js';
import type { Report } from './report.js';

/** What the gateway needs from the kernel firewall (firewall/). */
export interface Firewall {
  /** Add served addresses to the allow set before the answer leaves. */
  onResolved: OnResolved;
  /** The allowlist changed: drop set entries of names no longer allowed. */
  onReload(allowlist: Allowlist): Promise<void>;
  /** For /healthz: is the ruleset in place, and its drop counters. */
  status(): { up: boolean; [k: string]: unknown };
  stop(): Promise<void>;
}

export type FirewallFactory = (cfg: GatewayConfig, audit: Audit, allowlist: Allowlist, report: Report) => Promise<Firewall>;

export interface Gateway {
  dns: DnsServer;
  proxy: ProxyServer;
  allowlist(): Allowlist;
  /** Re-read the allowlist file; returns false (old policy kept) when it is invalid. */
  reload(): Promise<boolean>;
  stop(signal?: string): Promise<void>;
  /** Last resort (a third signal): write the `stop` line and what the audit log holds (at most maxMs); nothing else. */
  stopNow(signal?: string, maxMs?: number): Promise<void>;
}

/** How long the gateway's own addresses (notOwnAddress) are taken as read. */
const OWN_ADDRESSES_TTL_MS = 1_000;

/** `report` gets what the operator should see and the gateway survives (the entry point sends it to stderr). */
export async function startGateway(cfg: GatewayConfig, report: Report, makeFirewall?: FirewallFactory): Promise<Gateway> {
  // The file is read once here: what the watcher measures changes from is what was loaded.
  const initial = await readOnce(cfg.allowlistPath);
  let allowlist = await loadAllowlist(cfg, initial);
  const pool = poolFor(cfg);
  if (pool && !pool.ok) throw new ConfigError([pool.error]);
  const inject = cfg.inject ? loadInject(cfg.inject) : undefined;
  const audit = createAudit(cfg.auditLog, report, { rotation: { maxBytes: cfg.auditLogMaxBytes, keep: cfg.auditLogKeep } });
  let firewall: Firewall | undefined;
  if (cfg.firewall) {
    if (!makeFirewall) throw new ConfigError(['--firewall was asked for, but this build has no firewall: refusing to start (fail closed)']);
    // Fail closed: the firewall is applied and verified before anything listens.
    try {
      firewall = await makeFirewall(cfg, audit, allowlist, report);
    } catch (err) {
      await audit.close();
      throw err;
    }
  } else {
    report('WARNING: --no-firewall: the kernel does not enforce the allowlist (development only)');
  }
  // The gateway's own addresses (its non-loopback interfaces' now, and the transparent pool) are never
  // dialled: see notOwnAddress. Loopback's are left to the guard (127/8 is never public; the one-namespace
  // test harness keeps its fake internet on loopback).
  // Read at most once a second (the interfaces' list is a system call and an allocation per address: per
  // answer it cost a third of the uncached DNS rate); the gateway's addresses are set when it starts.
  const poolAddresses = pool?.ok ? pool.addresses : [];
  let own = { at: -Infinity, set: new Set<string>() };
  const ownAddresses = () => {
    const now = performance.now();
    if (now - own.at < OWN_ADDRESSES_TTL_MS) return own.set;
    const ifaces = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((a) => !a.internal).map((a) => a.address));
    own = { at: now, set: new Set([...ifaces, ...poolAddresses]) };
    return own.set;
  };
  const resolver = new Resolver(new UpstreamClient(cfg.upstreams, { timeoutMs: cfg.dnsTimeoutMs }), {
    guard: notOwnAddress(isReachable, ownAddresses),
    onResolved: firewall?.onResolved,
    // A reload during a lookup: the late answer is neither served nor put in the allow set.
    allowed: (name) => allowlist.decide(name, 'dns').allow,
  });
  const current = () => allowlist;
  let dns: DnsServer | undefined;
  let proxy: ProxyServer | undefined;
  let transparent: TransparentMode | undefined;
  const health = () => {
    const fw = firewall ? firewall.status() : { up: false, disabled: true, warning: 'firewall disabled (--no-firewall): development only' };
    const up = { dns: !!dns, proxy: !!proxy, firewall: fw };
    return {
      healthy: up.dns && up.proxy && (!firewall || fw.up),
      rules: allowlist.rules.length,
      ...up,
      ...(transparent ? { transparent: transparent.status() } : {}),
      ...(inject ? { credentials: injectSummary(inject) } : {}),
    };
  };
  try {
    // Transparent mode: the pool is the gateway's and its listeners hand connections to the proxy (which exists first).
    let assign: ((name: string, ttl: number) => ReturnType<TransparentMode['assign']>) | undefined;
    if (cfg.transparent) assign = (name, ttl) => transparent!.assign(name, ttl);
    proxy = await startProxy(cfg.listen, cfg.proxyPort, {
      allowlist: current,
      resolver,
      audit,
      limits: cfg.limits,
      health,
      report,
      ...(inject ? { inject } : {}),
    });
    if (cfg.transparent) transparent = await startTransparentMode(cfg, allowlist, proxy, audit, report);
    dns = await startDnsServer(cfg.listen, cfg.dnsPort, { allowlist: current, resolver, audit, report, transparent: assign });
  } catch (err) {
    await transparent?.close();
    await proxy?.close();
    await dns?.close();
    await firewall?.stop();
    await audit.close();
    throw err;
  }
  const dnsServer = dns;
  const proxyServer = proxy;
  await writeEffective(cfg.allowlistPath, allowlist).catch((err: Error) =>
    report(`could not write the effective allowlist: ${err.message}`),
  );
  audit.write({
    event: 'start',
    dns: `${cfg.listen}:${dnsServer.udp.port}`,
    proxy: `${cfg.listen}:${proxyServer.address.port}`,
    firewall: !!firewall,
    rules: allowlist.rules.length,
    upstreams: cfg.upstreams.map((u) => `${u.host}:${u.port}`),
    ...(transparent ? { transparent: transparent.status().pool } : {}),
  });

  let reloading: Promise<boolean> = Promise.resolve(true);
  /** Reload from `file` as the watcher read it, or (SIGHUP) as read now. */
  async function reloadOnce(file?: FileRead): Promise<boolean> {
    let next: Allowlist;
    const read = file ?? (await readOnce(cfg.allowlistPath));
    watch.loaded(read);
    try {
      next = await loadAllowlist(cfg, read);
    } catch (err) {
      const errors = err instanceof ConfigError ? err.errors : [(err as Error).message];
      audit.write({ event: 'reload', ok: false, rules: allowlist.rules.length, added: [], removed: [], errors });
      report(`allowlist not reloaded, the previous one stays in force:\n  ${errors.join('\n  ')}`);
      return false;
    }
    const before = new Set(allowlist.rules.map((r) => r.text));
    const after = new Set(next.rules.map((r) => r.text));
    const added = [...after].filter((t) => !before.has(t));
    const removed = [...before].filter((t) => !after.has(t));
    allowlist = next;
    resolver.forget((name) => !next.decide(name, 'dns').allow);
    // Every connection admitted under the old policy (tunnel, WebSocket, request in flight, or one still
    // resolving or connecting) that the new one refuses is closed now.
    const closed = proxyServer.revoke(next).length;
    // Transparent mode: addresses of names no longer allowed stand for nothing now; listeners follow the ports.
    const released = await transparent?.reload(next);
    await firewall?.onReload(next);
    await writeEffective(cfg.allowlistPath, next).catch(() => undefined);
    audit.write({
      event: 'reload',
      ok: true,
      rules: next.rules.length,
      added,
      removed,
      closed_tunnels: closed,
      ...(released ? { released } : {}),
    });
    return true;
  }
  const reload = (file?: FileRead) =>
    (reloading = reloading.then(
      () => reloadOnce(file),
      () => reloadOnce(file),
    ));

  const watch = watchFile(cfg.allowlistPath, (r) => void reload(r), { initial });

  let stopping: Promise<void> | undefined;
  const stop = (signal?: string) =>
    (stopping ??= (async () => {
      watch.stop();
      await Promise.all([dnsServer.close(), proxyServer.close(), transparent?.close()]);
      await firewall?.stop();
      audit.write({ event: 'stop', signal });
      await audit.close();
    })());

  const stopNow = async (signal?: string, maxMs = 1000) => {
    audit.write({ event: 'stop', signal, forced: true }); // ignored when the graceful stop already wrote its own
    let timer: NodeJS.Timeout | undefined;
    // (pino's flush returns before the bytes are written; closing waits for them, and joins a close under way)
    await Promise.race([audit.close(), new Promise((resolve) => (timer = setTimeout(resolve, maxMs)))]);
    clearTimeout(timer);
  };

  return { dns: dnsServer, proxy: proxyServer, allowlist: current, reload, stop, stopNow };
}
