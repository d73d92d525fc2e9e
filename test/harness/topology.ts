// Test harness: a three-host network of namespaces for the firewall proof.
//
//   sandbox ──veth── gateway ──veth── internet
//   10.10.0.2        10.10.0.1          198.51.100.2, and on its loopback: the fake upstream DNS,
//   fd10::2          198.51.100.1       allowed/denied web servers, a "LAN" host (10.20.0.5),
//                    fd10::1, fd20::1   a metadata server (169.254.169.254), 2001:db8::10
//
// The sandbox's default route (v4 and v6) points at the gateway and the gateway forwards (ip_forward=1,
// IPv6 forwarding=1), so without firewall rules the sandbox reaches every host of `internet` directly:
// whatever blocks it in the tests is the firewall. No namespace has a route to the machine's network.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { link, Netns } from './netns.js';
import { makeCert, startGatewayIn, startWorld, tempDir, type RunningGateway, type World } from './world.js';
import { DNS_PORT, PROXY_PORT } from '../../proxy/endpoints.js';
import { buildQuery } from '../../proxy/dns/wire.js';

export const SANDBOX = '10.10.0.2';
export const GATEWAY = '10.10.0.1';
/** The gateway's address on the internet side (one of "the gateway's other addresses"). */
export const GATEWAY_OUTSIDE = '198.51.100.1';
export const INTERNET = '198.51.100.2';
export const UPSTREAM = '192.0.2.53';
export const WEB = '203.0.113.10';
export const DENIED_WEB = '203.0.113.20';
export const NEW_WEB = '203.0.113.30';
export const LAN = '10.20.0.5';
export const METADATA = '169.254.169.254';
export const WEB6 = '2001:db8::10';
export const SHORT_WEB = '203.0.113.51';
export const LONG_WEB = '203.0.113.52';
/** A TCP service on the gateway's internet-side address (a banner server). */
export const GATEWAY_SERVICE_PORT = 2222;
/** A UDP service on the allowed web host (a DNS server on 5353), for the "UDP out" probe. */
export const UDP_PORT = 5353;

export const ZONE = {
  'allowed.test': { a: [WEB], ttl: 5 },
  'denied.test': { a: [DENIED_WEB] },
  'new.test': { a: [NEW_WEB] },
  'rebind.test': { a: [LAN] },
  'full1.test': { a: ['203.0.113.41'] },
  'full2.test': { a: ['203.0.113.42'] },
  /** For the long-session test: a TTL under the allow set's 60 s floor and one above it. */
  'short.test': { a: [SHORT_WEB], ttl: 20 },
  'long.test': { a: [LONG_WEB], ttl: 90 },
  /** attack5: a name whose answer is the gateway's own internet-side address. */
  'self.test': { a: [GATEWAY_OUTSIDE] },
};

export interface Topology {
  sandbox: Netns;
  gateway: Netns;
  internet: Netns;
  /** The gateway's sandbox-facing and internet-facing interfaces. */
  sandboxIf: string;
  outsideIf: string;
  world: World;
  /** A banner server on the gateway's internet-side address. */
  gatewayService: World;
  dir: string;
  cert: string;
  close(): Promise<void>;
}

export async function startTopology(): Promise<Topology> {
  const tmp = tempDir('codex-egress-topo-');
  const made: Netns[] = [];
  const worlds: World[] = [];
  const close = async () => {
    for (const w of worlds) await w.stop().catch(() => undefined);
    for (const ns of made) await ns.destroy();
    tmp.remove();
  };
  try {
    const sandbox = await Netns.create('ce-sbx');
    made.push(sandbox);
    const gateway = await Netns.create('ce-gw');
    made.push(gateway);
    const internet = await Netns.create('ce-net');
    made.push(internet);

    const s = await link(sandbox, `${SANDBOX}/24`, gateway, `${GATEWAY}/24`);
    const o = await link(gateway, `${GATEWAY_OUTSIDE}/24`, internet, `${INTERNET}/24`);
    await sandbox.run('ip', ['-6', 'addr', 'add', 'fd10::2/64', 'dev', s.aIf, 'nodad']);
    await gateway.run('ip', ['-6', 'addr', 'add', 'fd10::1/64', 'dev', s.bIf, 'nodad']);
    await gateway.run('ip', ['-6', 'addr', 'add', 'fd20::1/64', 'dev', o.aIf, 'nodad']);
    await internet.run('ip', ['-6', 'addr', 'add', 'fd20::2/64', 'dev', o.bIf, 'nodad']);

    await sandbox.run('ip', ['route', 'add', 'default', 'via', GATEWAY]);
    await sandbox.run('ip', ['-6', 'route', 'add', 'default', 'via', 'fd10::1']);
    await gateway.run('ip', ['route', 'add', 'default', 'via', INTERNET]);
    await gateway.run('ip', ['-6', 'route', 'add', 'default', 'via', 'fd20::2']);
    await gateway.run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    await gateway.run('sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    await internet.run('ip', ['route', 'add', '10.10.0.0/24', 'via', GATEWAY_OUTSIDE]);
    await internet.run('ip', ['-6', 'route', 'add', 'fd10::/64', 'via', 'fd20::1']);
    for (const a of [UPSTREAM, WEB, DENIED_WEB, NEW_WEB, LAN, METADATA, '203.0.113.41', '203.0.113.42', SHORT_WEB, LONG_WEB]) {
      await internet.addLoopbackAddress(`${a}/32`);
    }
    await internet.addLoopbackAddress(`${WEB6}/128`);

    for (const ns of [sandbox, gateway, internet]) await waitIPv6Ready(ns);

    const { cert, key } = await makeCert(tmp.path, ['allowed.test', 'denied.test', 'new.test', 'short.test', 'long.test']);
    const world = await startWorld(internet, tmp.path, {
      dns: [
        { ip: UPSTREAM, port: 53 },
        { ip: WEB, port: UDP_PORT },
      ],
      zone: ZONE,
      https: [WEB, DENIED_WEB, NEW_WEB, SHORT_WEB, LONG_WEB]
        .map((ip) => ({ ip, port: 443, cert, key }))
        .concat([{ ip: WEB, port: 8443, cert, key }]),
      http: [WEB, LAN, METADATA, WEB6].map((ip) => ({ ip, port: 80 })),
    });
    worlds.push(world);
    const gatewayService = await startWorld(gateway, tmp.path, { banner: [{ ip: GATEWAY_OUTSIDE, port: GATEWAY_SERVICE_PORT }] });
    worlds.push(gatewayService);
    return { sandbox, gateway, internet, sandboxIf: s.bIf, outsideIf: o.aIf, world, gatewayService, dir: tmp.path, cert, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Wait (at most 5 s) until no IPv6 address of the namespace is tentative (link-local DAD after link up). */
export async function waitIPv6Ready(ns: Netns): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (!String((await ns.run('ip', ['-6', 'addr'])).stdout).includes('tentative')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${ns.name}: IPv6 addresses still tentative after 5 s`);
}

/** The proxy as the sandbox reaches it. */
export const PROXY = `http://${GATEWAY}:${PROXY_PORT}`;

/** `codex-egress gateway` arguments for this network: the rules of `allowlist` only, served on the sandbox side. */
export const topologyGatewayArgs = (allowlist: string, ...extra: string[]) => [
  '--no-defaults',
  '--listen',
  GATEWAY,
  '--dns-port',
  String(DNS_PORT),
  '--proxy-port',
  String(PROXY_PORT),
  '--upstream',
  UPSTREAM,
  '--allowlist',
  allowlist,
  ...extra,
];

/**
 * A test file's teardown: stop its gateways (one that is already gone is no error; `signal` for each, else
 * a graceful stop), then remove the namespaces. Either may be missing when the set-up failed early.
 */
export async function closeTopology(
  topo: Topology | undefined,
  gateways: Iterable<{ stop(signal?: NodeJS.Signals): Promise<void> } | undefined>,
  signal?: NodeJS.Signals,
): Promise<void> {
  for (const g of gateways) await g?.stop(signal).catch(() => undefined);
  await topo?.close();
}

export function writeAllowlist(dir: string, rules: string[]): string {
  const path = join(dir, 'allowed_domains.txt');
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${rules.join('\n')}\n`);
  renameSync(tmp, path);
  return path;
}

export interface CurlResult {
  exitCode: number;
  /** HTTP status of the final response (0 when there was none). */
  code: number;
  /** HTTP status of the proxy's answer to CONNECT (0 when none). */
  connect: number;
  body: string;
  stderr: string;
}

/** Run curl in a namespace (never longer than maxSeconds). */
export async function curl(ns: Netns, args: string[], maxSeconds = 3): Promise<CurlResult> {
  const r = await ns.run('curl', ['-sS', '--max-time', String(maxSeconds), '-w', '\n%{http_code} %{http_connect}', ...args], {
    reject: false,
    timeoutMs: (maxSeconds + 5) * 1000,
  });
  const out = String(r.stdout);
  const cut = out.lastIndexOf('\n');
  const [code, connect] = out
    .slice(cut + 1)
    .split(' ')
    .map(Number);
  return {
    exitCode: r.exitCode ?? -1,
    code: code ?? 0,
    connect: connect ?? 0,
    body: out.slice(0, Math.max(cut, 0)),
    stderr: String(r.stderr),
  };
}

/** dig in a namespace: one try, one second. Returns the status (NOERROR, NXDOMAIN, …, or TIMEOUT) and A records. */
export async function dig(
  ns: Netns,
  server: string,
  name: string,
  extra: string[] = [],
): Promise<{ status: string; answers: string[]; output: string }> {
  const r = await ns.run('dig', ['+time=1', '+tries=1', `@${server}`, name, 'A', ...extra], { reject: false, timeoutMs: 10_000 });
  const out = String(r.stdout);
  const status =
    /status: (\w+)/.exec(out)?.[1] ?? (/timed out|no servers could be reached/.test(out) ? 'TIMEOUT' : `FAILED(${r.exitCode})`);
  const answers = [...out.matchAll(/^\S+\s+\d+\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[1]!);
  return { status, answers, output: out };
}

/** A TCP connection attempt from a namespace through a Node socket: 'connected', an error code, or 'timeout'. */
export async function tcpProbe(ns: Netns, host: string, port: number, timeoutMs = 1500): Promise<string> {
  const script = `const s = require('node:net').connect({ host: ${JSON.stringify(host)}, port: ${port} });
    s.setTimeout(${timeoutMs}, () => { console.log('timeout'); process.exit(0); });
    s.on('connect', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const r = await ns.run(process.execPath, ['-e', script], { reject: false, timeoutMs: timeoutMs + 10_000 });
  return String(r.stdout).trim();
}

/** One ping (v4 or v6), one second. */
export async function ping(ns: Netns, host: string): Promise<boolean> {
  const r = await ns.run('ping', [host.includes(':') ? '-6' : '-4', '-c', '1', '-W', '1', host], { reject: false, timeoutMs: 10_000 });
  return r.exitCode === 0;
}

/** Members of an ipset in a namespace, with their remaining timeouts. */
export async function setMembers(ns: Netns, set: string): Promise<Map<string, number>> {
  const r = await ns.run('ipset', ['list', set]);
  const out = String(r.stdout);
  const members = out.slice(out.indexOf('Members:') + 'Members:'.length);
  const m = new Map<string, number>();
  for (const line of members.split('\n')) {
    const [entry, , timeout] = line.trim().split(/\s+/);
    if (entry) m.set(entry, Number(timeout ?? -1));
  }
  return m;
}

/**
 * One DNS query (A, `name`) to the gateway's resolver, sent from the sandbox namespace with source
 * `from`:`port` — an address the sandbox took on its own side, which is all forging a source takes.
 */
export async function forgedDnsQuery(topo: Topology, from: string, port: number, name: string): Promise<void> {
  const q = buildQuery(name).bytes.toString('hex');
  const script = `const s = require('node:dgram').createSocket('udp4');
    s.bind(${port}, ${JSON.stringify(from)}, () => s.send(Buffer.from('${q}', 'hex'), ${DNS_PORT}, ${JSON.stringify(GATEWAY)}, () => setTimeout(() => process.exit(0), 200)));`;
  await topo.sandbox.run(process.execPath, ['-e', script]);
}

/**
 * The topology and a gateway (firewall on) allowing `rules`, with `forged` addresses taken by the sandbox on
 * its own side (to send from: forging a source takes no more). Everything is closed again if the start fails.
 */
export async function startForgingTopology(rules: string[], forged: string[]): Promise<{ topo: Topology; gw: RunningGateway }> {
  const topo = await startTopology();
  try {
    const allowlistPath = writeAllowlist(topo.dir, rules);
    for (const ip of forged) await topo.sandbox.addLoopbackAddress(`${ip}/32`);
    return { topo, gw: await startGatewayIn(topo.gateway, topo.dir, topologyGatewayArgs(allowlistPath)) };
  } catch (err) {
    await topo.close();
    throw err;
  }
}
