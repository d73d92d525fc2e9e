// The `verify` probe set. Runs INSIDE the sandbox with the sandbox's node (`docker exec -e
// PROBE_CONFIG=… node -` with this file on stdin), so it imports only node built-ins and exports nothing.
// Prints one JSON line per probe: { id, ok, detail }. "ok" means the sandbox behaves as it must.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import dgram from 'node:dgram';
import dns from 'node:dns/promises';
import os from 'node:os';
import fs from 'node:fs';

interface ProbeConfig {
  gatewayIp: string;
  proxyPort: number;
  /** The internal bridge's unconfigured .1 address. */
  bridgeIp: string;
  /** An allowlisted host to reach through the proxy (skipped when absent). */
  allowedHost?: string;
  deniedHost: string;
  timeoutMs: number;
  /** The sandbox's read-only mounts (their paths inside it), each to be proven read-only. */
  readOnly?: string[];
}
const cfg = JSON.parse(process.env.PROBE_CONFIG ?? '{}') as ProbeConfig;
type Result = { id: string; ok: boolean; detail: string };

/** A direct TCP connection: "blocked" unless it connects or is refused by a host that answered. */
function tcp(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, family: net.isIPv6(host) ? 6 : 4 });
    const done = (what: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(what);
    };
    const t = setTimeout(() => done('timeout'), cfg.timeoutMs);
    s.on('connect', () => done('connected'));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}
const blocked = (outcome: string) => outcome !== 'connected' && outcome !== 'ECONNREFUSED';

/**
 * CONNECT through the gateway's proxy: the status it answers (0: no answer). With `handshake`, a 200 is
 * followed by a TLS handshake naming the host (certificate not checked: reachability is the question),
 * so the gateway sees a proper ClientHello rather than an idle tunnel.
 */
function connectVia(target: string, handshake = false): Promise<{ status: number; reason: string; tls?: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: cfg.gatewayIp, port: cfg.proxyPort, method: 'CONNECT', path: target, timeout: cfg.timeoutMs * 3 });
    req.on('connect', (res, socket) => {
      const result = { status: res.statusCode ?? 0, reason: String(res.headers['x-codex-egress-deny'] ?? '') };
      if (!handshake || result.status !== 200) {
        socket.destroy();
        return resolve(result);
      }
      const servername = target.slice(0, target.lastIndexOf(':'));
      const t = tls.connect({ socket, servername, rejectUnauthorized: false });
      const done = (what: string) => {
        clearTimeout(timer);
        t.destroy();
        resolve({ ...result, tls: what });
      };
      const timer = setTimeout(() => done('timeout'), cfg.timeoutMs * 3);
      t.on('secureConnect', () => done('ok'));
      t.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, reason: e.message }));
    req.end();
  });
}

function httpGet(url: string, viaProxy: boolean): Promise<{ status: number; reason: string }> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const opts = viaProxy
      ? { host: cfg.gatewayIp, port: cfg.proxyPort, path: url, headers: { host: u.host } }
      : { host: u.hostname, port: Number(u.port || 80), path: u.pathname };
    const req = http.get({ ...opts, timeout: cfg.timeoutMs * 3 }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, reason: String(res.headers['x-codex-egress-deny'] ?? '') });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, reason: e.message }));
  });
}

/** A DNS query sent straight to a resolver, bypassing the gateway: must get no answer. */
function directDns(server: string): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (what: string) => {
      clearTimeout(t);
      s.close();
      resolve(what);
    };
    const t = setTimeout(() => done('timeout'), cfg.timeoutMs);
    // id 0x1234, RD, one question: example.com A IN
    const q = Buffer.from('123401000001000000000000076578616d706c6503636f6d0000010001', 'hex');
    s.on('message', () => done('answered'));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    s.send(q, 53, server, (e) => e && done((e as NodeJS.ErrnoException).code ?? e.message));
  });
}

async function lookup(name: string): Promise<string> {
  try {
    const r = await dns.lookup(name, { family: 4, all: true });
    return `resolved ${r.map((a) => a.address).join(',')}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** TLS straight to host:port (no proxy) naming `servername`: 'ok', or why not. */
function directTls(host: string, port: number, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, servername, rejectUnauthorized: false });
    const done = (what: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => done('timeout'), cfg.timeoutMs * 3);
    s.on('secureConnect', () => done('ok'));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/**
 * Transparent mode (the gateway's /healthz says whether it is on): an allowed name resolves to a pool
 * address, and TLS to it with no proxy works; the same address named as another host is refused. Off:
 * a direct connection to the allowed name's address is blocked.
 */
async function transparentProbe(): Promise<Result> {
  if (!cfg.allowedHost) return { id: 'transparent', ok: true, detail: 'skipped: no exact host in the allowlist' };
  const h = await new Promise<{ transparent?: { pool: string } }>((resolve) => {
    http
      .get({ host: cfg.gatewayIp, port: cfg.proxyPort, path: '/healthz', timeout: cfg.timeoutMs * 3 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch {
            resolve({});
          }
        });
      })
      .on('error', () => resolve({}));
  });
  const d = await lookup(cfg.allowedHost);
  const ip = d.startsWith('resolved ') ? d.slice('resolved '.length).split(',')[0]! : '';
  if (!h.transparent) {
    const direct = ip ? await tcp(ip, 443) : 'no address';
    return { id: 'transparent', ok: blocked(direct), detail: `off; ${cfg.allowedHost} ${d}; direct :443 ${direct}` };
  }
  const [pass, other] = await Promise.all([
    directTls(cfg.allowedHost, 443, cfg.allowedHost),
    ip ? directTls(ip, 443, cfg.deniedHost) : Promise.resolve('no address'),
  ]);
  return {
    id: 'transparent',
    ok: !!ip && inCidr(ip, h.transparent.pool) && pass === 'ok' && other !== 'ok',
    detail: `pool ${h.transparent.pool}; ${cfg.allowedHost} ${d}; TLS without proxy ${pass}; as ${cfg.deniedHost} ${other}`,
  };
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(base ?? '') / size);
}

async function allBlocked(id: string, targets: Array<[string, number]>): Promise<Result> {
  const outcomes = await Promise.all(targets.map(async ([h, p]) => `${h}:${p} ${await tcp(h, p)}`));
  return { id, ok: outcomes.every((o) => blocked(o.slice(o.lastIndexOf(' ') + 1))), detail: outcomes.join('; ') };
}

/** The per-mount options of the mount at `path` (the last one listed: it is the one on top), from mountinfo. */
function mountOptions(path: string): string[] | undefined {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean);
  let real = path;
  try {
    real = fs.realpathSync(path);
  } catch {
    /* compared as given */
  }
  const hit = lines
    .map((l) => l.split(' '))
    .filter((f) => unescape(f[4] ?? '') === path || unescape(f[4] ?? '') === real)
    .at(-1);
  return hit?.[5]?.split(',');
}

/**
 * A read-only mount is read-only: the kernel lists it `ro` and a write fails (a new file in a directory,
 * an open for writing of a file) with EROFS; for a file the sandbox user may not write anyway, EACCES.
 */
function readOnlyProbe(path: string): Result {
  const opts = mountOptions(path);
  let write = 'written';
  try {
    const st = fs.statSync(path);
    const target = st.isDirectory() ? `${path}/.codex-egress-ro-probe-${process.pid}` : path;
    const fd = fs.openSync(target, st.isDirectory() ? 'wx' : 'r+');
    fs.closeSync(fd);
    if (st.isDirectory()) fs.unlinkSync(target);
  } catch (e) {
    write = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
  const ok = !!opts?.includes('ro') && (write === 'EROFS' || write === 'EACCES');
  return { id: 'read-only', ok, detail: `${path}: mount ${opts ? (opts.includes('ro') ? 'ro' : 'NOT ro') : 'not found'}; write ${write}` };
}

const probes: Array<() => Promise<Result>> = [
  ...(cfg.readOnly ?? []).map((path) => async () => readOnlyProbe(path)),
  async () => {
    const r = await httpGet(`http://${cfg.gatewayIp}:${cfg.proxyPort}/healthz`, false);
    return { id: 'gateway-healthy', ok: r.status === 200, detail: `GET /healthz: ${r.status || r.reason}` };
  },
  async () => {
    if (!cfg.allowedHost) return { id: 'allowed-host', ok: true, detail: 'skipped: no exact host in the allowlist' };
    const [d, c] = await Promise.all([lookup(cfg.allowedHost), connectVia(`${cfg.allowedHost}:443`, true)]);
    return {
      id: 'allowed-host',
      ok: d.startsWith('resolved') && c.status === 200 && c.tls === 'ok',
      detail: `${cfg.allowedHost}: dns ${d}; CONNECT :443 ${c.status || c.reason}${c.tls ? `; TLS ${c.tls}` : ''}`,
    };
  },
  async () => {
    const [d, c] = await Promise.all([lookup(cfg.deniedHost), connectVia(`${cfg.deniedHost}:443`)]);
    return {
      id: 'denied-host',
      ok: d === 'ENOTFOUND' && c.status === 403,
      detail: `${cfg.deniedHost}: dns ${d}; CONNECT :443 ${c.status} ${c.reason}`,
    };
  },
  async () => {
    const c = await connectVia('1.1.1.1:443');
    const direct = await tcp('1.1.1.1', 443);
    return {
      id: 'ip-literal',
      ok: c.status === 403 && blocked(direct),
      detail: `CONNECT 1.1.1.1:443 ${c.status} ${c.reason}; direct ${direct}`,
    };
  },
  async () => {
    const outcomes = await Promise.all(['1.1.1.1', '8.8.8.8', cfg.bridgeIp].map(async (s) => `${s} ${await directDns(s)}`));
    return { id: 'direct-dns', ok: outcomes.every((o) => !o.endsWith(' answered')), detail: outcomes.join('; ') };
  },
  async () => {
    const v6 = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && a.family === 'IPv6' && !a.internal);
    const t = await tcp('2606:4700:4700::1111', 443);
    return {
      id: 'ipv6',
      ok: v6.length === 0 && blocked(t),
      detail: `addresses: ${v6.map((a) => a!.address).join(',') || 'none'}; direct ${t}`,
    };
  },
  () =>
    allBlocked('lan', [
      ['192.168.1.1', 80],
      ['10.0.0.1', 80],
      ['172.16.0.1', 80],
    ]),
  async () => {
    const r = await allBlocked('metadata', [['169.254.169.254', 80]]);
    const p = await httpGet('http://169.254.169.254/latest/meta-data/', true);
    return { ...r, ok: r.ok && p.status === 403, detail: `${r.detail}; via proxy ${p.status} ${p.reason}` };
  },
  transparentProbe,
  () =>
    allBlocked('host-bridge', [
      [cfg.bridgeIp, 22],
      [cfg.bridgeIp, 80],
      ['172.17.0.1', 22],
      ['172.17.0.1', 2375],
    ]),
];

const results = await Promise.all(probes.map((p) => p().catch((e: Error) => ({ id: 'error', ok: false, detail: e.message }))));
for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
