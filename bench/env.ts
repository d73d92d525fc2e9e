// The benchmark world: one network namespace (made here, deleted on exit or Ctrl-C) holding
//   198.51.100.53:53    the upstream DNS (a dnsmasq answering *.bench.example with the addresses below)
//   203.0.113.10:443    bulk server · 203.0.113.11:443 conn server · 203.0.113.12:80 HTTP origin
//   127.0.0.1           codex-egress (proxy 3128, DNS 5300) and the peers: squid 3129, tinyproxy 3130,
//                       node-min 3131 (bench/minproxy.ts, the runtime floor: no checks), dnsmasq 5301,
//                       unbound 5302, each run by hand with the config files written here.
// Documentation addresses count as public for the gateway's address guard, and they exist only in here.
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { Netns, type Proc } from '../test/harness/netns.js';
import { CLI, ROOT, tempDir } from '../test/harness/world.js';
import { GATEWAY_NODE_FLAGS } from '../proxy/runtime.js';

export const DOMAIN = 'bench.example';
export const UPSTREAM_DNS = '198.51.100.53';
export const BULK = { ip: '203.0.113.10', port: 443, name: `bulk.${DOMAIN}` };
export const CONN = { ip: '203.0.113.11', port: 443, name: `conn.${DOMAIN}` };
export const HTTP = { ip: '203.0.113.12', port: 80, name: `www.${DOMAIN}` };
export const LISTEN = '127.0.0.1';
export const PORTS = { gatewayProxy: 3128, gatewayDns: 5300, squid: 3129, tinyproxy: 3130, 'node-min': 3131, dnsmasq: 5301, unbound: 5302 };

export type ProxyPeer = 'squid' | 'tinyproxy' | 'node-min';
/** The port of a proxy peer by its column name. */
export const peerPort = (p: ProxyPeer): number => (p === 'node-min' ? PORTS['node-min'] : PORTS[p]);
export type DnsPeer = 'dnsmasq' | 'unbound';

const DIST = join(ROOT, 'dist', 'bench');

export interface GatewayOptions {
  /** Extra node flags (e.g. --cpu-prof). */
  nodeFlags?: string[];
  extraArgs?: string[];
  allowlistFile?: string;
  /** Start with --firewall instead of --no-firewall. */
  firewall?: boolean;
  /** Upstream DNS "IP[:PORT]" instead of the namespace's dnsmasq. */
  upstream?: string;
}

export interface Env {
  ns: Netns;
  dir: string;
  gateway: Proc & { pid: number };
  peers: { proxy: Partial<Record<ProxyPeer, Proc & { pid: number }>>; dns: Partial<Record<DnsPeer, Proc & { pid: number }>> };
  missing: string[];
  startGateway(opts?: GatewayOptions): Promise<void>;
  stopGateway(): Promise<void>;
  /** Run a bench script (loadgen) inside the namespace and parse its last JSON line. */
  node<T>(script: string, arg: object, timeoutMs: number): Promise<T>;
  spawnNode(script: string, arg: object): Proc;
  /** Run any command inside the namespace. */
  run(cmd: string, args: string[], timeoutMs: number): Promise<string>;
  rss(pid: number): number;
  close(): Promise<void>;
}

const have = (bin: string) => execa('sh', ['-c', `command -v ${bin}`], { reject: false }).then((r) => r.exitCode === 0);
const withPid = (p: Proc) => Object.assign(p, { pid: p.child.pid! });

function squidConf(dir: string): string {
  return `http_port ${LISTEN}:${PORTS.squid}
pid_filename ${dir}/squid.pid
cache deny all
cache_mem 8 MB
access_log stdio:${dir}/squid-access.log
cache_log ${dir}/squid-cache.log
cache_store_log none
coredump_dir ${dir}
dns_nameservers ${UPSTREAM_DNS}
pinger_enable off
shutdown_lifetime 0 seconds
max_filedescriptors 16384
acl allowed dstdomain .${DOMAIN}
acl SSL_ports port 443
acl Safe_ports port 80 443
acl CONNECT method CONNECT
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow allowed
http_access deny all
`;
}

function tinyproxyConf(dir: string): string {
  writeFileSync(join(dir, 'tinyproxy.filter'), `(^|\\.)${DOMAIN.replace(/\./g, '\\.')}$\n`);
  return `User nobody
Group nogroup
Port ${PORTS.tinyproxy}
Listen ${LISTEN}
Timeout 600
MaxClients 4096
LogFile "${dir}/tinyproxy.log"
LogLevel Connect
PidFile "${dir}/tinyproxy.pid"
Filter "${dir}/tinyproxy.filter"
FilterType ere
FilterDefaultDeny Yes
ConnectPort 443
`;
}

function unboundConf(dir: string): string {
  return `server:
  interface: ${LISTEN}@${PORTS.unbound}
  port: ${PORTS.unbound}
  do-ip6: no
  num-threads: 1
  chroot: ""
  username: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: "${dir}/unbound.log"
  log-queries: yes
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: no
  msg-cache-size: 16m
  rrset-cache-size: 32m
  local-zone: "." always_nxdomain
  local-zone: "${DOMAIN}." transparent
forward-zone:
  name: "${DOMAIN}."
  forward-addr: ${UPSTREAM_DNS}
`;
}

export async function createEnv(opts: { peers: boolean; node: string }): Promise<Env> {
  // The runtime under test (gateway and node-min); the load generators and origins keep this process's.
  const runtime = opts.node;
  const tmp = tempDir('codex-egress-bench-');
  const dir = tmp.path;
  chmodSync(dir, 0o777); // squid and tinyproxy drop to their own users and log here
  const ns = await Netns.create('ceb');
  const etcNetns = `/etc/netns/${ns.name}`;
  const cleanupFiles = () => {
    rmSync(etcNetns, { recursive: true, force: true });
    tmp.remove();
  };
  process.on('exit', cleanupFiles);

  for (const ip of [UPSTREAM_DNS, BULK.ip, CONN.ip, HTTP.ip]) await ns.addLoopbackAddress(`${ip}/32`);
  // Namespace-local sysctls (never the root namespace's): room for many short-lived connections.
  await ns.run('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=1024 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=8192']);
  // Name resolution for programs using the libc resolver (tinyproxy): `ip netns exec` bind-mounts this.
  mkdirSync(etcNetns, { recursive: true });
  writeFileSync(join(etcNetns, 'resolv.conf'), `nameserver ${UPSTREAM_DNS}\n`);

  const missing: string[] = [];
  const spawn = (cmd: string, args: string[]) => withPid(ns.spawn(cmd, args));
  const waitPort = async (proc: Proc, proto: 'tcp' | 'udp', port: number, what: string) => {
    const end = Date.now() + 15_000;
    for (;;) {
      const r = await ns.run('ss', [proto === 'tcp' ? '-ltnH' : '-lunH', `sport = :${port}`], { reject: false });
      if (String(r.stdout).trim()) return;
      if (proc.exited || Date.now() > end) throw new Error(`${what} did not start; output:\n${proc.output()}`);
      await new Promise((r2) => setTimeout(r2, 100));
    }
  };

  // The upstream DNS: dnsmasq as a fast authoritative stand-in (every peer and we forward to it).
  if (!(await have('dnsmasq'))) {
    await ns.destroy();
    cleanupFiles();
    throw new Error('dnsmasq is needed as the upstream DNS stand-in: run bench/setup.sh (also installs the peers, wrk and dnsperf)');
  }
  const zone = [`--address=/${BULK.name}/${BULK.ip}`, `--address=/${CONN.name}/${CONN.ip}`, `--address=/${DOMAIN}/${HTTP.ip}`];
  const upstream = spawn('dnsmasq', [
    '-k',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--bind-interfaces',
    '--user=root',
    `--listen-address=${UPSTREAM_DNS}`,
    '--port=53',
    '--local-ttl=3600',
    '--cache-size=0',
    `--pid-file=${dir}/upstream-dns.pid`,
    ...zone,
  ]);
  await waitPort(upstream, 'udp', 53, 'upstream dnsmasq');
  const servers = withPid(
    ns.spawn(process.execPath, [
      join(DIST, 'servers.js'),
      JSON.stringify({ bulk: `${BULK.ip}:${BULK.port}`, conn: `${CONN.ip}:${CONN.port}`, http: `${HTTP.ip}:${HTTP.port}` }),
    ]),
  );
  await servers.waitFor(/servers ready/);

  const peers: Env['peers'] = { proxy: {}, dns: {} };
  if (opts.peers) {
    if (await have('squid')) {
      writeFileSync(join(dir, 'squid.conf'), squidConf(dir));
      peers.proxy.squid = spawn('squid', ['-N', '-f', join(dir, 'squid.conf')]);
    } else missing.push('squid');
    if (await have('tinyproxy')) {
      writeFileSync(join(dir, 'tinyproxy.conf'), tinyproxyConf(dir));
      peers.proxy.tinyproxy = spawn('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')]);
    } else missing.push('tinyproxy');
    // The runtime floor (no checks, never a product path): the same Node, relaying only.
    peers.proxy['node-min'] = withPid(
      ns.spawn(runtime, [join(DIST, 'minproxy.js'), JSON.stringify({ listen: LISTEN, port: PORTS['node-min'] })]),
    );
    if (await have('dnsmasq')) {
      peers.dns.dnsmasq = spawn('dnsmasq', [
        '-k',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--no-poll',
        '--bind-interfaces',
        '--user=root',
        `--listen-address=${LISTEN}`,
        `--port=${PORTS.dnsmasq}`,
        '--cache-size=10000',
        `--pid-file=${dir}/dnsmasq.pid`,
        `--server=/${DOMAIN}/${UPSTREAM_DNS}`,
        '--address=/#/',
        '--log-queries',
        `--log-facility=${dir}/dnsmasq.log`,
        '--dns-forward-max=1000',
      ]);
    } else missing.push('dnsmasq');
    if (await have('unbound')) {
      writeFileSync(join(dir, 'unbound.conf'), unboundConf(dir));
      peers.dns.unbound = spawn('unbound', ['-d', '-c', join(dir, 'unbound.conf')]);
    } else missing.push('unbound');
    if (peers.proxy.squid) await waitPort(peers.proxy.squid, 'tcp', PORTS.squid, 'squid');
    if (peers.proxy.tinyproxy) await waitPort(peers.proxy.tinyproxy, 'tcp', PORTS.tinyproxy, 'tinyproxy');
    await waitPort(peers.proxy['node-min']!, 'tcp', PORTS['node-min'], 'node-min');
    if (peers.dns.dnsmasq) await waitPort(peers.dns.dnsmasq, 'udp', PORTS.dnsmasq, 'dnsmasq');
    if (peers.dns.unbound) await waitPort(peers.dns.unbound, 'udp', PORTS.unbound, 'unbound');
  }

  const env: Env = {
    ns,
    dir,
    gateway: undefined as unknown as Env['gateway'],
    peers,
    missing,
    async startGateway(g: GatewayOptions = {}) {
      const allowlist = g.allowlistFile ?? join(dir, 'allowed_domains.txt');
      if (!existsSync(allowlist)) writeFileSync(allowlist, '');
      const args = [
        ...GATEWAY_NODE_FLAGS,
        ...(g.nodeFlags ?? []),
        CLI,
        'gateway',
        g.firewall ? '--firewall' : '--no-firewall',
        '--listen',
        LISTEN,
        '--dns-port',
        String(PORTS.gatewayDns),
        '--proxy-port',
        String(PORTS.gatewayProxy),
        '--upstream',
        g.upstream ?? UPSTREAM_DNS,
        '--no-defaults',
        '--allow',
        `.${DOMAIN}`,
        '--allowlist',
        allowlist,
        '--audit-log',
        join(dir, 'audit.jsonl'),
        '--max-connections',
        '100000',
        ...(g.extraArgs ?? []),
      ];
      const proc = withPid(ns.spawn(runtime, args));
      await proc.waitFor(/gateway up/);
      env.gateway = proc;
    },
    async stopGateway() {
      await env.gateway?.stop('SIGTERM', 10_000);
    },
    async node<T>(script: string, arg: object, timeoutMs: number): Promise<T> {
      const r = await ns.run(process.execPath, [join(DIST, script), JSON.stringify(arg)], { timeoutMs, reject: false });
      const last = String(r.stdout).trim().split('\n').pop() ?? '';
      if (r.exitCode !== 0) throw new Error(`${script} failed: ${String(r.all ?? '').slice(-2000)}`);
      return JSON.parse(last) as T;
    },
    spawnNode: (script, arg) => ns.spawn(process.execPath, [join(DIST, script), JSON.stringify(arg)]),
    async run(cmd, args, timeoutMs) {
      const r = await ns.run(cmd, args, { timeoutMs, reject: false });
      if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${String(r.all ?? '').slice(-2000)}`);
      return String(r.stdout);
    },
    rss(pid: number) {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    async close() {
      await env.gateway?.stop('SIGTERM', 10_000).catch(() => undefined);
      for (const p of [...Object.values(peers.proxy), ...Object.values(peers.dns), servers, upstream])
        await p?.stop('SIGTERM', 3000).catch(() => undefined);
      await ns.destroy();
      cleanupFiles();
    },
  };
  return env;
}
