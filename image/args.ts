// Pure generation of `docker …` argument lists for the appliance. No I/O: image/docker.ts runs them.
import { PROJECT_LABEL, WORKDIR_LABEL, type Project } from './names.js';
import {
  DNS_PORT,
  GATEWAY_ALLOWLIST_DIR,
  GATEWAY_ALLOWLIST_PATH,
  GATEWAY_AUDIT_PATH,
  GATEWAY_LOG_DIR,
  HEALTH_TIMING,
  PROXY_PORT,
  healthCommand,
} from '../proxy/endpoints.js';

/** The gateway's kernel firewall: on (NET_ADMIN, `--firewall`); `up --no-firewall` is for development only. */
export const GATEWAY_FIREWALL_DEFAULT = true;
/**
 * Transparent egress by name (proxy/transparent/): on, with the firewall. The pool is the upper half of
 * the project's /24, kept out of Docker's address management (internalNetworkArgs' --ip-range).
 */
export const GATEWAY_TRANSPARENT_DEFAULT = true;

export const SANDBOX_HOME = '/home/codex';
export const SANDBOX_CODEX_HOME = `${SANDBOX_HOME}/.codex`;

export interface ImageNames {
  gateway: string;
  codex: string;
}
/** Docker's restart policy for the gateway: back after a crash, never after a deliberate stop. */
export const GATEWAY_RESTART_POLICY = 'on-failure';

/**
 * Codex's own sandbox inside the appliance. `off` (default): the container and the gateway are the
 * sandbox, Codex starts with sandbox_mode = "danger-full-access" (its bubblewrap sandbox cannot be built
 * under Docker's default seccomp profile). `inner`: Codex's bubblewrap sandbox works inside the container
 * (seccomp and AppArmor relaxed so unprivileged user namespaces can be made; README: trade-offs).
 */
export type CodexSandboxMode = 'off' | 'inner';
export const CODEX_SANDBOX_LABEL = 'dev.codex-egress.codex-sandbox';
export const SANDBOX_USER_LABEL = 'dev.codex-egress.user';
/** The credentials model the sandbox was made with (image/credentials.ts). */
export const CREDENTIALS_LABEL = 'dev.codex-egress.credentials';
/** The paths inside the sandbox meant to be read-only (JSON list), set by the host: what `verify` proves. */
export const READ_ONLY_LABEL = 'dev.codex-egress.read-only';

/**
 * The `codex` command line: our defaults first, as `-c` overrides on the root command, so that anything
 * the user passes after `--` (a flag such as --sandbox, or a later -c) wins. `sub` is a subcommand that
 * goes after our overrides (exec).
 */
export function codexCommand(o: { mode: CodexSandboxMode; autonomous?: boolean; sub?: string[]; userArgs?: string[] }): string[] {
  return [
    'codex',
    ...(o.mode === 'off' ? ['-c', 'sandbox_mode="danger-full-access"'] : []),
    ...(o.autonomous ? ['-c', 'approval_policy="never"'] : []),
    ...(o.sub ?? []),
    ...(o.userArgs ?? []),
  ];
}

/** The names of the API key variables given to Codex, in the order Codex 0.169 reads them. */
export const API_KEY_VARS = ['CODEX_API_KEY', 'OPENAI_API_KEY'] as const;

/**
 * The key variables for Codex from the host's environment: CODEX_API_KEY (what `codex exec` reads), set
 * from OPENAI_API_KEY when only that is set; OPENAI_API_KEY passed as is. They travel as `docker exec -e
 * NAME` with the value in docker's own environment: never in an argument list, an image, the container's
 * stored configuration, a file or a log.
 */
export function apiKeyEnv(env: NodeJS.ProcessEnv): { names: string[]; values: Record<string, string>; source?: string } {
  const values: Record<string, string> = {};
  if (env.CODEX_API_KEY) values.CODEX_API_KEY = env.CODEX_API_KEY;
  else if (env.OPENAI_API_KEY) values.CODEX_API_KEY = env.OPENAI_API_KEY;
  if (env.OPENAI_API_KEY) values.OPENAI_API_KEY = env.OPENAI_API_KEY;
  const source = env.CODEX_API_KEY ? 'CODEX_API_KEY' : env.OPENAI_API_KEY ? 'OPENAI_API_KEY' : undefined;
  return { names: Object.keys(values), values, ...(source ? { source } : {}) };
}

export const DEFAULT_IMAGES: ImageNames = { gateway: 'codex-egress-gateway:latest', codex: 'codex-egress-codex:latest' };

const labels = (p: Project) => ['--label', `${PROJECT_LABEL}=${p.name}`, '--label', `${WORKDIR_LABEL}=${p.workdir}`];

/** The sandbox's network: internal, fixed subnet, and no host address on the bridge. */
export function internalNetworkArgs(p: Project): string[] {
  return [
    'network',
    'create',
    '--driver',
    'bridge',
    '--internal',
    '--subnet',
    p.subnet,
    // Docker gives out the lower half only: the upper half is the gateway's transparent pool.
    '--ip-range',
    p.subnet.replace(/\.0\/24$/, '.0/25'),
    '-o',
    'com.docker.network.bridge.inhibit_ipv4=true',
    ...labels(p),
    p.internalNetwork,
  ];
}

/** The gateway's way out: an ordinary bridge network of its own (unless the user names an existing one). */
export function egressNetworkArgs(p: Project): string[] {
  return ['network', 'create', '--driver', 'bridge', ...labels(p), p.egressNetwork];
}

export interface GatewayOptions {
  image: string;
  /** Host directory mounted at /etc/codex (allowed_domains.txt and its .effective.json). */
  allowlistDir: string;
  /** Host directory mounted at /var/log/codex-egress (audit.jsonl). */
  logDir: string;
  firewall: boolean;
  /** Group of the host user: the gateway's root writes the state directories through it. */
  gid: number;
  upstreams?: string[];
  allow?: string[];
  noDefaults?: boolean;
  /** A preset's name (proxy/policy/presets.ts), passed as --preset. */
  preset?: string;
  /** OPENAI_ALLOWED_DOMAINS, passed through when set. */
  envAllowed?: string;
  /** Transparent egress by name (`--transparent` / `--no-transparent`); unset: the gateway's own default. */
  transparent?: boolean;
  /** More `codex-egress gateway` arguments (credential injection: image/credentials.ts). */
  extraArgs?: string[];
}

/** `docker create` for the gateway, attached to the internal network at its static address. */
export function gatewayCreateArgs(p: Project, o: GatewayOptions): string[] {
  const caps = o.firewall ? ['--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW'] : [];
  return [
    'create',
    '--name',
    p.gateway,
    ...labels(p),
    '--network',
    p.internalNetwork,
    '--ip',
    p.gatewayIp,
    '--cap-drop',
    'ALL',
    '--cap-add',
    'NET_BIND_SERVICE',
    ...caps,
    '--security-opt',
    'no-new-privileges',
    '--sysctl',
    'net.ipv6.conf.all.disable_ipv6=1',
    '--sysctl',
    'net.ipv6.conf.default.disable_ipv6=1',
    // Strict reverse-path filtering (ATTACK6, beside the firewall's `-s`): a packet whose source the
    // gateway would not route back out of the interface it came in on (a sandbox forging a LAN or
    // internet source) is dropped by the kernel. `all` covers the egress interface connected later too.
    '--sysctl',
    'net.ipv4.conf.all.rp_filter=1',
    '--read-only',
    '--tmpfs',
    '/run',
    '--tmpfs',
    '/tmp',
    '--user',
    `0:${o.gid}`,
    // A crash (any non-zero exit) restarts the gateway; `down` and `docker stop` do not. It re-applies its
    // firewall before it listens again; while it is down the sandbox has no route anywhere (fail closed).
    // --init: node is not PID 1, so it can be signalled (and killed) like any process, and children are reaped.
    '--restart',
    GATEWAY_RESTART_POLICY,
    '--init',
    '-v',
    `${o.allowlistDir}:${GATEWAY_ALLOWLIST_DIR}`,
    '-v',
    `${o.logDir}:${GATEWAY_LOG_DIR}`,
    ...(o.envAllowed !== undefined ? ['-e', `OPENAI_ALLOWED_DOMAINS=${o.envAllowed}`] : []),
    '--health-cmd',
    healthCommand(p.gatewayIp).map(shellQuote).join(' '),
    '--health-interval',
    HEALTH_TIMING.interval,
    '--health-timeout',
    HEALTH_TIMING.timeout,
    '--health-retries',
    String(HEALTH_TIMING.retries),
    '--health-start-period',
    HEALTH_TIMING.startPeriod,
    o.image,
    ...gatewayCommandArgs(p, o),
  ];
}

/** The arguments of `codex-egress gateway` inside the gateway container. */
export function gatewayCommandArgs(p: Project, o: GatewayOptions): string[] {
  return [
    '--listen',
    p.gatewayIp,
    '--dns-port',
    String(DNS_PORT),
    '--proxy-port',
    String(PROXY_PORT),
    '--allowlist',
    GATEWAY_ALLOWLIST_PATH,
    '--audit-log',
    GATEWAY_AUDIT_PATH,
    o.firewall ? '--firewall' : '--no-firewall',
    ...(o.transparent === undefined ? [] : [o.transparent ? '--transparent' : '--no-transparent']),
    ...(o.upstreams ?? []).flatMap((u) => ['--upstream', u]),
    ...(o.allow ?? []).flatMap((r) => ['--allow', r]),
    ...(o.noDefaults ? ['--no-defaults'] : []),
    ...(o.extraArgs ?? []),
    ...(o.preset ? ['--preset', o.preset] : []),
  ];
}

/** `docker network connect` of the gateway to its egress network (after create, before start). */
export function connectEgressArgs(p: Project, egressNetwork: string): string[] {
  return ['network', 'connect', egressNetwork, p.gateway];
}

export interface Mount {
  host: string;
  container: string;
  readOnly?: boolean;
}

/**
 * Where a host path appears inside the sandbox. A path inside one of the sandbox's read-write mounts
 * (host side given as its real path) is there under that mount's destination, not at its own real
 * path: a `--read-only` path inside the workdir must be mounted over the workdir's copy of it, or the
 * sandbox keeps it writable through the workdir (the workdir is mounted at the path as given, which
 * may pass through the user's own links, e.g. /home -> /usr/home). The deepest mount wins. Pure.
 */
export function containerPathOf(real: string, rw: Mount[]): string {
  const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
  const m = rw.filter((x) => within(real, x.host)).sort((a, b) => b.host.length - a.host.length)[0];
  return m ? `${m.container}${real.slice(m.host.length)}` : real;
}

/**
 * Paths inside the sandbox that no read-write mount may cover or lie inside: the Codex home and the
 * init script's directory (mount destinations of their own: a link the sandbox left in a mount around
 * them would redirect them inside the container), and the image's executables, libraries and
 * configuration (a read-write /usr/local/bin would put the sandbox's `node` in the place of the one
 * `up` runs as root to fix the user).
 */
export const PROTECTED_SANDBOX_PATHS = [
  SANDBOX_CODEX_HOME,
  '/opt/codex-egress',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/usr/bin',
  '/usr/sbin',
  '/usr/lib',
  '/usr/lib32',
  '/usr/lib64',
  '/usr/libx32',
  '/usr/libexec',
  '/usr/local/bin',
  '/usr/local/sbin',
  '/usr/local/lib',
  '/etc',
  '/proc',
  '/sys',
  '/dev',
  '/run',
  '/var/run',
] as const;

export interface SandboxOptions {
  image: string;
  uid: number;
  gid: number;
  /** Codex's own sandbox: off (default) or working inside the container. */
  codexSandbox?: CodexSandboxMode;
  /** Host directory mounted as the Codex home ($CODEX_HOME). */
  codexHome: string;
  /** auth.json, mounted read-only into the Codex home (never copied). */
  authFile?: string;
  /** Sessions directory, when kept outside the Codex home. */
  sessionsPath?: string;
  /** Extra mounts: --read-only paths, .git read-only, the read-only view of the gateway's state. */
  mounts?: Mount[];
  gpus?: string;
  /** /dev/shm size (docker --shm-size). */
  shmSize?: string;
  /** The container runtime (docker --runtime), e.g. runsc. */
  runtime?: string;
  env?: Record<string, string>;
  /** The credentials model (image/credentials.ts), as a label; `trustCa`: append the project CA to the system store at start. */
  credentials?: string;
  trustCa?: boolean;
}

/** The proxy URL the sandbox uses: an IP literal, so no DNS is needed to find it. */
export const proxyUrl = (p: Project) => `http://${p.gatewayIp}:${PROXY_PORT}`;

/** The proxy variables, in both cases and with the same value. */
export function proxyEnv(p: Project): Record<string, string> {
  const url = proxyUrl(p);
  const noProxy = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    NODE_USE_ENV_PROXY: '1',
  };
}

/** `docker create` for the sandbox: internal network only, DNS and proxy = the gateway, no capabilities. */
export function sandboxCreateArgs(p: Project, o: SandboxOptions): string[] {
  const mount = (m: Mount) => ['-v', `${m.host}:${m.container}${m.readOnly ? ':ro' : ''}`];
  const env = { ...proxyEnv(p), HOME: SANDBOX_HOME, CODEX_HOME: SANDBOX_CODEX_HOME, USER: 'codex', LOGNAME: 'codex', ...o.env };
  const mode = o.codexSandbox ?? 'off';
  // inner: what bubblewrap needs to build Codex's sandbox without privileges (user, mount and network
  // namespaces), and nothing more: still no capabilities and no-new-privileges.
  const inner = mode === 'inner' ? ['--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined'] : [];
  return [
    'create',
    '--name',
    p.sandbox,
    ...labels(p),
    '--label',
    `${CODEX_SANDBOX_LABEL}=${mode}`,
    '--label',
    `${SANDBOX_USER_LABEL}=${o.uid}:${o.gid}`,
    ...(o.credentials ? ['--label', `${CREDENTIALS_LABEL}=${o.credentials}`] : []),
    '--label',
    `${READ_ONLY_LABEL}=${JSON.stringify([...(o.authFile ? [`${SANDBOX_CODEX_HOME}/auth.json`] : []), ...(o.mounts ?? []).filter((m) => m.readOnly).map((m) => m.container)])}`,
    '--network',
    p.internalNetwork,
    '--ip',
    p.sandboxIp,
    '--dns',
    p.gatewayIp,
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    ...inner,
    '--sysctl',
    'net.ipv6.conf.all.disable_ipv6=1',
    '--sysctl',
    'net.ipv6.conf.default.disable_ipv6=1',
    '--user',
    `${o.uid}:${o.gid}`,
    '--init',
    ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    ...mount({ host: p.workdir, container: p.workdir }),
    ...mount({ host: o.codexHome, container: SANDBOX_CODEX_HOME }),
    ...(o.authFile ? mount({ host: o.authFile, container: `${SANDBOX_CODEX_HOME}/auth.json`, readOnly: true }) : []),
    ...(o.sessionsPath ? mount({ host: o.sessionsPath, container: `${SANDBOX_CODEX_HOME}/sessions` }) : []),
    ...(o.mounts ?? []).flatMap(mount),
    ...(o.gpus ? ['--gpus', o.gpus] : []),
    ...(o.shmSize ? ['--shm-size', o.shmSize] : []),
    ...(o.runtime ? ['--runtime', o.runtime] : []),
    '-w',
    p.workdir,
    o.image,
    'sleep',
    'infinity',
  ];
}

/**
 * `docker exec` in the sandbox, as its user, in the workdir. `envNames` are passed by name only (`-e
 * NAME`): docker takes the value from its own environment, so a secret never appears in an argument list.
 */
export function sandboxExecArgs(
  p: Project,
  command: string[],
  o: { tty?: boolean; stdin?: boolean; envNames?: string[]; user?: string; cwd?: string } = {},
): string[] {
  return [
    'exec',
    ...(o.stdin || o.tty ? ['-i'] : []),
    ...(o.tty ? ['-t'] : []),
    ...(o.envNames ?? []).flatMap((n) => ['-e', n]),
    ...(o.user ? ['-u', o.user] : []),
    '-w',
    o.cwd ?? p.workdir,
    p.sandbox,
    ...command,
  ];
}

/**
 * The image's `codex` user takes the sandbox user's uid/gid (its passwd and group lines), so tools that
 * look the user up (ssh, whoami, git) find it. Run once after start as root without capabilities: it
 * can rewrite the root-owned /etc/passwd and /etc/group, nothing more.
 */
export function sandboxUserFixArgs(p: Project, uid: number, gid: number): string[] {
  const script = [
    "const fs = require('fs');",
    'const [uid, gid] = process.argv.slice(1);',
    "const edit = (f, fn) => { const t = fs.readFileSync(f, 'utf8'); const nl = String.fromCharCode(10); const n = t.split(nl).map((l) => { const c = l.split(':'); return c[0] === 'codex' ? fn(c).join(':') : l; }).join(nl); if (n !== t) fs.writeFileSync(f, n); };",
    "edit('/etc/passwd', (c) => { c[2] = uid; c[3] = gid; return c; });",
    "edit('/etc/group', (c) => { c[2] = gid; return c; });",
  ].join(' ');
  // From /, not the workdir: nothing the sandbox can write is this root process's current directory.
  return ['exec', '-u', '0:0', '-w', '/', p.sandbox, 'node', '-e', script, String(uid), String(gid)];
}

/** Everything of the project's, for `down` and `status`. */
export const projectFilter = (p: Project) => ['--filter', `label=${PROJECT_LABEL}=${p.name}`];

export interface BuildOptions {
  dockerfile: string;
  context: string;
  tag: string;
  buildArgs: Record<string, string>;
}

export function buildArgs(o: BuildOptions): string[] {
  return [
    // --force-rm: a failed step's container is removed too (the legacy builder keeps it otherwise).
    'build',
    '--force-rm',
    '-f',
    o.dockerfile,
    '-t',
    o.tag,
    ...Object.entries(o.buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
    o.context,
  ];
}

/** Quote for `sh -c` (docker's --health-cmd is run by the container's shell). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
