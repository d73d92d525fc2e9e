// `codex-egress gateway`: run the gateway in the current network namespace until SIGTERM.
import { readFile } from 'node:fs/promises';
import { parse, intOption, secondsOption, mebibytesOption, UsageError } from './args.js';
import { defaultConfig, parseConfig, resolvConfUpstreams, ConfigError, effectivePath, type GatewayConfigInput } from '../proxy/config.js';
import { startGateway, type FirewallFactory, type Gateway } from '../proxy/gateway.js';
import { installLastResort } from '../proxy/lastresort.js';
import type { Report } from '../proxy/report.js';
import { DNS_PORT, GATEWAY_ALLOWLIST_PATH, PROXY_PORT } from '../proxy/endpoints.js';
import { PRESET_NAMES, isPresetName, type PresetName } from '../proxy/policy/presets.js';

export const GATEWAY_USAGE = `Usage: codex-egress gateway [options]

Runs the DNS resolver, the HTTP/CONNECT proxy, the firewall and the audit log in the current
network namespace until SIGTERM or SIGINT. SIGHUP re-reads the allowlist file (so does editing it).

Options:
  --listen IP             address to listen on (default 0.0.0.0)
  --dns-port N            DNS port, UDP and TCP (default ${DNS_PORT})
  --proxy-port N          HTTP/CONNECT proxy port (default ${PROXY_PORT})
  --upstream IP[:PORT]    upstream DNS resolver, repeatable, tried in order (default: /etc/resolv.conf)
  --allowlist FILE        the allowlist file, watched for changes (default ${GATEWAY_ALLOWLIST_PATH});
                          the merged allowlist is written beside it as <name>.effective.json
  --allow RULE            allow a rule, repeatable (also: OPENAI_ALLOWED_DOMAINS)
  --no-defaults           leave out the built-in OpenAI rules
  --preset NAME           add a preset's rules (${PRESET_NAMES.join(', ')}; default locked: the defaults only)
  --audit-log FILE|-      where audit events go, one JSON line each (default - : standard output)
  --audit-log-max-size MB rotate the audit log file at this size (default 64): FILE becomes FILE.1, …
  --audit-log-keep N      rotated audit log files kept (default 4)
  --firewall              apply and verify the kernel firewall before serving (default)
  --no-firewall           no kernel firewall: development only, said loudly in the log and /healthz
  --sandbox-interface IF  the interface the sandbox reaches the gateway on: DNS and the proxy are
                          accepted from it only (default: the interface holding the --listen address;
                          with --listen 0.0.0.0 this option is required)
  --firewall-set-size N   most addresses the firewall allows at once (default 65536); when full, new
                          DNS answers are refused (SERVFAIL) instead of failing open
  --transparent           transparent egress by name: DNS answers an allowed name with an address of the
                          gateway's own pool, and a TCP connection to it on an allowed port is that name's
                          tunnel (checked and audited as CONNECT), for tools that ignore proxy settings
  --no-transparent        DNS answers the upstream's addresses; only the proxy reaches out (default)
  --transparent-pool CIDR the pool's addresses (default: the upper half of the --listen address's /24)
  --dns-timeout SECONDS   per-upstream DNS timeout (default 2)
  --connect-timeout SECONDS   upstream TCP connect timeout (default 10)
  --idle-timeout SECONDS  close tunnels and connections idle this long in both directions (default 900)
  --hello-timeout SECONDS time a CONNECT tunnel has for its first-bytes check (default 10)
  --headers-timeout SECONDS   time a client has to send complete request headers (default 10)
  --max-connections N     concurrent connections per client address (default 512)
  --credentials FILE      inject these credentials (JSON; README: Credentials): TLS to their hosts is
                          terminated with the CA in --ca-dir and the sentinel replaced by the value
  --ca-dir DIR            the injection CA: DIR/ca.pem and DIR/ca-key.pem (required with --credentials)
  --upstream-ca FILE      PEM certificates trusted for the injected hosts besides the system roots
  -h, --help              this help`;

/** What the gateway's modules report (proxy/report.ts) goes to standard error, `codex-egress: ` first. */
const report: Report = (msg) => process.stderr.write(`codex-egress: ${msg}\n`);

export async function gatewayCommand(argv: string[], makeFirewall?: FirewallFactory): Promise<number> {
  const { values: v } = parse(argv, {
    listen: { type: 'string' },
    'dns-port': { type: 'string' },
    'proxy-port': { type: 'string' },
    upstream: { type: 'string', multiple: true },
    allowlist: { type: 'string' },
    allow: { type: 'string', multiple: true },
    'no-defaults': { type: 'boolean' },
    preset: { type: 'string' },
    'audit-log': { type: 'string' },
    'audit-log-max-size': { type: 'string' },
    'audit-log-keep': { type: 'string' },
    firewall: { type: 'boolean' },
    'no-firewall': { type: 'boolean' },
    'sandbox-interface': { type: 'string' },
    'firewall-set-size': { type: 'string' },
    'dns-timeout': { type: 'string' },
    transparent: { type: 'boolean' },
    'no-transparent': { type: 'boolean' },
    'transparent-pool': { type: 'string' },
    'connect-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'hello-timeout': { type: 'string' },
    'headers-timeout': { type: 'string' },
    'max-connections': { type: 'string' },
    credentials: { type: 'string' },
    'ca-dir': { type: 'string' },
    'upstream-ca': { type: 'string' },
  });
  if (!v.credentials !== !v['ca-dir']) throw new UsageError('--credentials and --ca-dir go together');
  if (v['upstream-ca'] && !v.credentials) throw new UsageError('--upstream-ca is for --credentials');
  if (v.firewall && v['no-firewall']) throw new UsageError('--firewall and --no-firewall contradict each other');
  if (v.transparent && v['no-transparent']) throw new UsageError('--transparent and --no-transparent contradict each other');
  if (v.preset !== undefined && !isPresetName(v.preset))
    throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(', ')}, not "${v.preset}"`);
  const d = defaultConfig();
  let upstreams = v.upstream ?? [];
  if (upstreams.length === 0) upstreams = resolvConfUpstreams(await readFile('/etc/resolv.conf', 'utf8').catch(() => ''));
  const input: GatewayConfigInput = {
    ...d,
    listen: v.listen ?? d.listen,
    dnsPort: intOption('dns-port', v['dns-port'], d.dnsPort, 0, 65535),
    proxyPort: intOption('proxy-port', v['proxy-port'], d.proxyPort, 0, 65535),
    upstreams,
    allowlistPath: v.allowlist ?? d.allowlistPath,
    allow: v.allow ?? [],
    defaults: !v['no-defaults'],
    ...(v.preset ? { preset: v.preset as PresetName } : {}),
    auditLog: v['audit-log'] ?? d.auditLog,
    auditLogMaxBytes: mebibytesOption('audit-log-max-size', v['audit-log-max-size'], d.auditLogMaxBytes, 64 * 1024),
    auditLogKeep: intOption('audit-log-keep', v['audit-log-keep'], d.auditLogKeep, 1, 100),
    firewall: !v['no-firewall'],
    sandboxInterface: v['sandbox-interface'],
    firewallSetSize: intOption('firewall-set-size', v['firewall-set-size'], d.firewallSetSize, 1, 1_000_000),
    dnsTimeoutMs: secondsOption('dns-timeout', v['dns-timeout'], d.dnsTimeoutMs, 60),
    transparent: v.transparent === true || (!!v['transparent-pool'] && !v['no-transparent']),
    transparentPool: v['transparent-pool'],
    ...(v.credentials && v['ca-dir']
      ? { inject: { credentials: v.credentials, caDir: v['ca-dir'], ...(v['upstream-ca'] ? { upstreamCa: v['upstream-ca'] } : {}) } }
      : {}),
    limits: {
      ...d.limits,
      connectTimeoutMs: secondsOption('connect-timeout', v['connect-timeout'], d.limits.connectTimeoutMs),
      idleTimeoutMs: secondsOption('idle-timeout', v['idle-timeout'], d.limits.idleTimeoutMs),
      helloTimeoutMs: secondsOption('hello-timeout', v['hello-timeout'], d.limits.helloTimeoutMs),
      headersTimeoutMs: secondsOption('headers-timeout', v['headers-timeout'], d.limits.headersTimeoutMs),
      maxConnectionsPerClient: intOption('max-connections', v['max-connections'], d.limits.maxConnectionsPerClient, 1, 1_000_000),
    },
  };
  // The signal handlers go in before anything starts and stay until the process ends. They are registered
  // with `on`, never `once`: execa's signal-exit (loaded as soon as a child process runs — the ipset session,
  // the firewall's counter reads) re-raises a signal that has no listener but its own, and with a `once`
  // handler already removed that killed the gateway mid-stop (exit 143/130, no `stop` line, no flush).
  // First signal: graceful stop. Second: said, and ignored (the stop, audit flush included, goes on).
  // Third: stop at once, exit 1, after the audit log's pending lines are written (at most 1 s). A fourth: exit 1.
  let gateway: Gateway | undefined;
  let signals = 0;
  let firstSignal: NodeJS.Signals | undefined;
  let stopped: Promise<number> | undefined;
  let onStopped: ((code: number) => void) | undefined;
  const stop = (g: Gateway, signal: NodeJS.Signals) =>
    (stopped ??= g.stop(signal).then(
      () => 0,
      (e: Error) => {
        process.stderr.write(`codex-egress: stop failed: ${e.message}\n`);
        return 1;
      },
    ));
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      firstSignal = signal;
      process.stderr.write(`codex-egress: ${signal}: stopping\n`);
      if (gateway) void stop(gateway, signal).then((code) => onStopped?.(code));
    } else if (signals === 2) {
      process.stderr.write(`codex-egress: ${signal}: already stopping (flushing the audit log); a third signal stops at once\n`);
    } else if (signals === 3) {
      process.stderr.write(`codex-egress: ${signal}: stopping at once\n`);
      void (gateway?.stopNow(signal) ?? Promise.resolve()).finally(() => process.exit(1));
    } else process.exit(1);
  };
  const onHup = () => void gateway?.reload();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHup);
  // Last resort: an exception nothing caught closes its connection only, or stops the gateway (exit 70).
  // The audit log's pending lines (and a forced `stop` line) are written first, within stopNow's 1 s bound.
  installLastResort({
    log: (line) => process.stderr.write(`${line}\n`),
    exit: (code) => void (gateway?.stopNow('internal-error') ?? Promise.resolve()).finally(() => process.exit(code)),
  });
  try {
    const cfg = parseConfig(input);
    gateway = await startGateway(cfg, report, makeFirewall);
    process.stderr.write(
      `codex-egress: gateway up: dns ${cfg.listen}:${gateway.dns.udp.port}, proxy ${cfg.listen}:${gateway.proxy.address.port}, ` +
        `${gateway.allowlist().rules.length} rules (effective list: ${effectivePath(cfg.allowlistPath)})\n`,
    );
  } catch (err) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHup);
    if (err instanceof ConfigError) {
      process.stderr.write(`codex-egress gateway: invalid configuration:\n  ${err.errors.join('\n  ')}\n`);
      return 1;
    }
    if ((err as { code?: string }).code === 'ERR_FIREWALL') {
      process.stderr.write(
        `codex-egress gateway: the firewall could not be applied, refusing to start (fail closed):\n  ${(err as Error).message}\n`,
      );
      return 1;
    }
    process.stderr.write(`codex-egress gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  // A signal that came while starting stops the gateway now that it is up.
  if (firstSignal) return stop(gateway, firstSignal);
  return new Promise<number>((resolve) => (onStopped = resolve));
}
