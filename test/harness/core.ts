// One hermetic namespace holding the fake internet and the gateway, for the gateway-core tests.
// Everything lives on the namespace's loopback: fake upstream DNS on 198.51.100.53, web servers on
// 203.0.113.10 (allowed.test) and 203.0.113.20 (denied.test), a "LAN" host on 10.0.0.5 and a
// metadata address 169.254.169.254. The namespace has no other interface, so nothing can leak.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Netns, type Proc } from './netns.js';
import { makeCert, startGatewayIn, startWorld, tempDir, type RunningGateway, type World } from './world.js';

export const UPSTREAM = '198.51.100.53';
export const DEAD_UPSTREAM = '198.51.100.99';
export const WEB = '203.0.113.10';
export const OTHER_WEB = '203.0.113.20';
export const LAN = '10.0.0.5';
export const METADATA = '169.254.169.254';
export const PROXY = 'http://127.0.0.1:3128';

export const ZONE = {
  'allowed.test': { a: [WEB] },
  'second.test': { a: [WEB] },
  'denied.test': { a: [OTHER_WEB] },
  'cache.test': { a: [WEB], ttl: 300 },
  'alias.test': { cname: 'target.cdn.test' },
  'target.cdn.test': { a: [WEB] },
  'trunc.test': { a: [WEB], truncate: true },
  'lan.test': { a: [LAN] },
  'meta.test': { a: [METADATA] },
  'mixed.test': { a: [WEB, LAN] },
  'a.wild.test': { a: [WEB] },
  'broken.test': { rcode: 2 },
  'slow.test': { a: [WEB], delayMs: 2500 },
};

/** The rules the core tests run with (no OpenAI defaults). */
export const RULES = [
  'allowed.test',
  'allowed.test:8443',
  // Port 2222 speaks a protocol of its own (banner, then echo): a /tcp rule lets a tunnel carry it.
  'allowed.test:2222/tcp',
  // Port 2223, the same service under a plain port rule: TLS, HTTP or SSH only.
  'allowed.test:2223',
  'cache.test',
  'alias.test',
  'trunc.test',
  'lan.test',
  'meta.test',
  'mixed.test',
  '*.wild.test',
  'missing.test',
  'broken.test',
];

export interface Core {
  ns: Netns;
  dir: string;
  world: World;
  cert: string;
  allowlistPath: string;
  gateway: RunningGateway;
  /** Start another gateway in the same namespace (other ports, other upstreams). */
  extraGateway(args: string[]): Promise<RunningGateway>;
  close(): Promise<void>;
}

export async function startCore(opts: { fileRules?: string[]; flagRules?: string[]; gatewayArgs?: string[] } = {}): Promise<Core> {
  const tmp = tempDir();
  const ns = await Netns.create('ce-core');
  try {
    for (const a of [UPSTREAM, WEB, OTHER_WEB, LAN, METADATA]) await ns.addLoopbackAddress(`${a}/32`);
    const { cert, key } = await makeCert(tmp.path, ['allowed.test', 'denied.test', 'second.test']);
    const world = await startWorld(ns, tmp.path, {
      dns: [{ ip: UPSTREAM, port: 53 }],
      zone: ZONE,
      http: [WEB, OTHER_WEB, LAN, METADATA].map((ip) => ({ ip, port: 80 })),
      https: [...[WEB, OTHER_WEB, LAN].map((ip) => ({ ip, port: 443, cert, key })), { ip: WEB, port: 8443, cert, key }],
      banner: [
        { ip: WEB, port: 2222 },
        { ip: WEB, port: 2223 },
      ],
    });
    const allowlistPath = join(tmp.path, 'allowed_domains.txt');
    writeFileSync(allowlistPath, `# test allowlist\n${(opts.fileRules ?? []).join('\n')}\n`);
    const flags = (opts.flagRules ?? RULES).flatMap((r) => ['--allow', r]);
    const base = ['--no-firewall', '--no-defaults', '--listen', '127.0.0.1', '--allowlist', allowlistPath];
    const gateway = await startGatewayIn(ns, tmp.path, [...base, '--upstream', UPSTREAM, ...flags, ...(opts.gatewayArgs ?? [])]);
    const extras: RunningGateway[] = [];
    return {
      ns,
      dir: tmp.path,
      world,
      cert,
      allowlistPath,
      gateway,
      async extraGateway(args) {
        const g = await startGatewayIn(ns, tmp.path, [...base, ...flags, ...args]);
        extras.push(g);
        return g;
      },
      async close() {
        for (const g of [gateway, ...extras]) await g.stop();
        await world.stop();
        await ns.destroy();
        tmp.remove();
      },
    };
  } catch (err) {
    await ns.destroy();
    tmp.remove();
    throw err;
  }
}

/** Run dig inside the namespace against the gateway; returns status, answers and flags. */
export async function dig(ns: Netns, name: string, opts: { type?: string; port?: number; tcp?: boolean; server?: string } = {}) {
  const r = await ns.run('dig', [
    `@${opts.server ?? '127.0.0.1'}`,
    '-p',
    String(opts.port ?? 53),
    name,
    opts.type ?? 'A',
    '+tries=1',
    '+time=5',
    ...(opts.tcp ? ['+tcp'] : []),
  ]);
  const out = r.stdout;
  const status = /status: ([A-Z]+)/.exec(out)?.[1] ?? 'NO-ANSWER';
  const answers = [...out.matchAll(/^\S+\s+(\d+)\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[2]!);
  const ttls = [...out.matchAll(/^\S+\s+(\d+)\s+IN\s+A\s+(\S+)$/gm)].map((m) => Number(m[1]));
  const answerCount = Number(/ANSWER: (\d+)/.exec(out)?.[1] ?? -1);
  return { status, answers, ttls, answerCount, out };
}

/** curl inside the namespace; never throws, returns exit code, body and the written-out variables. */
export async function curl(ns: Netns, args: string[]) {
  const r = await ns.run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code} %{http_connect}', ...args], { reject: false });
  const lines = r.stdout.split('\n');
  const [code, connect] = (lines.pop() ?? '').split(' ');
  return { exitCode: r.exitCode ?? -1, body: lines.join('\n'), code: Number(code), connect: Number(connect), stderr: r.stderr };
}

/** Run a node script inside the namespace (for raw-socket clients) and parse its JSON output. */
export async function nodeIn<T>(ns: Netns, script: string, timeoutMs = 20_000): Promise<T> {
  const r = await ns.run(process.execPath, ['--input-type=module', '-e', script], { timeoutMs });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/**
 * Open a tunnel through the gateway's proxy to allowed.test:2222 (banner, then echo) and keep it busy
 * (a line every 200 ms); prints what comes back, and "TUNNEL CLOSED" when the gateway closes it.
 */
export function openTunnel(ns: Netns): Proc {
  return ns.spawn(process.execPath, [
    '--input-type=module',
    '-e',
    `import net from 'node:net';
     const s = net.connect(3128, '127.0.0.1');
     s.on('data', (d) => process.stdout.write(d.toString()));
     s.on('close', () => { process.stdout.write('\\nTUNNEL CLOSED\\n'); process.exit(0); });
     s.on('error', () => {});
     s.write('CONNECT allowed.test:2222 HTTP/1.1\\r\\nHost: allowed.test:2222\\r\\n\\r\\n');
     let n = 0; setInterval(() => s.write('tick' + (n++) + '\\n'), 200);
     setTimeout(() => process.exit(0), 30000);`,
  ]);
}
