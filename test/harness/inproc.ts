// The in-process test tier: the real proxy and DNS server of proxy/, started on 127.0.0.1:0 inside the
// test's own process. No root, no namespace, no firewall: seconds per file. Injected through the
// constructors production uses (proxy/gateway.ts wires the real ones):
// - the upstream: a zone in memory (FakeUpstream) instead of UpstreamClient;
// - the address guard: public addresses (proxy/address.ts) plus 127.0.0.1 exactly, where the origins listen;
// - the audit sink: every event kept in memory (MemoryAudit), for tests that assert on the audit line.
// The namespace suite (harness/core.ts) and the Docker suite remain the proof; this tier covers behaviour.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import dgram from 'node:dgram';
import { isReachable } from '../../proxy/address.js';
import type { Audit, AuditEvent } from '../../proxy/audit.js';
import { DEFAULT_LIMITS, type ProxyLimits } from '../../proxy/config.js';
import { Resolver } from '../../proxy/dns/resolver.js';
import { startDnsServer, type DnsServer } from '../../proxy/dns/server.js';
import { UpstreamError, type UpstreamResolver, type UpstreamResult } from '../../proxy/dns/upstream.js';
import { CLASS_IN, encode, parseMessage, RCODE, type Message } from '../../proxy/dns/wire.js';
import { startProxy, type ProxyServer } from '../../proxy/http/proxy.js';
import { mergeSources, type Allowlist } from '../../proxy/policy/allowlist.js';

/** An audit sink that keeps every event; waitFor() resolves with the first event (past or future) that matches. */
export class MemoryAudit implements Audit {
  readonly events: AuditEvent[] = [];
  private readonly waiters = new Set<{ match: (e: AuditEvent) => boolean; resolve: (e: AuditEvent) => void }>();

  write(e: AuditEvent): void {
    this.events.push(e);
    for (const w of this.waiters) {
      if (w.match(e)) {
        this.waiters.delete(w);
        w.resolve(e);
      }
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  waitFor<E extends AuditEvent>(match: (e: AuditEvent) => e is E, timeoutMs?: number): Promise<E>;
  waitFor(match: (e: AuditEvent) => boolean, timeoutMs?: number): Promise<AuditEvent>;
  waitFor(match: (e: AuditEvent) => boolean, timeoutMs = 5000): Promise<AuditEvent> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (e: AuditEvent) => (clearTimeout(timer), resolve(e)) };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no matching audit event in ${timeoutMs} ms; saw ${JSON.stringify(this.events.slice(-5))}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }
}

export interface ZoneEntry {
  a?: string[];
  cname?: string;
  ttl?: number;
  /** The upstream fails for this name (every resolver down). */
  fail?: boolean;
}

/** An upstream answering from a zone in memory; records every name it was asked. Unknown names: NXDOMAIN. */
export class FakeUpstream implements UpstreamResolver {
  readonly asked: string[] = [];
  constructor(private readonly zone: Record<string, ZoneEntry>) {}

  async resolveA(name: string): Promise<UpstreamResult> {
    this.asked.push(name);
    let e = this.zone[name.toLowerCase()];
    if (e?.fail) throw new UpstreamError(`all upstream resolvers failed: ${name}: fake failure`);
    let ttl = e?.ttl ?? 60;
    for (let hop = 0; e?.cname && hop < 8; hop++) {
      e = this.zone[e.cname];
      ttl = Math.min(ttl, e?.ttl ?? 60);
    }
    if (!e) return { rcode: RCODE.NXDOMAIN, ips: [], ttl: 0, upstream: 'fake' };
    return { rcode: RCODE.NOERROR, ips: e.a ?? [], ttl, upstream: 'fake' };
  }
}

/** The in-process guard: what production allows, and the loopback address the tests' origins listen on. */
export const loopbackOrPublic = (ip: string): boolean => ip === '127.0.0.1' || isReachable(ip);

export interface Origin {
  port: number;
  /** Every request it received: method, url, Host header. */
  requests: Array<{ method: string; url: string; host: string }>;
}

export interface Inproc {
  proxy: ProxyServer;
  dns: DnsServer;
  audit: MemoryAudit;
  /** What the servers reported (proxy/report.ts). */
  reports: string[];
  upstream: FakeUpstream;
  /** An HTTP origin on 127.0.0.1 (answers `hello <host> <url>`). */
  origin: Origin;
  allowlist(): Allowlist;
  /** Replace the rules and revoke what they no longer allow, as the gateway's reload does. */
  setRules(rules: string[]): void;
  close(): Promise<void>;
}

export interface InprocOptions {
  /** The rules (as --allow flags); a function gets the origin's port. */
  rules: string[] | ((originPort: number) => string[]);
  zone: Record<string, ZoneEntry>;
  guard?: (ip: string) => boolean;
  limits?: Partial<ProxyLimits>;
  /** The proxy's /healthz body (a test may make it throw). */
  health?: () => { healthy: boolean; [k: string]: unknown };
}

function allowlistOf(rules: string[]): Allowlist {
  const r = mergeSources({ defaults: false, flags: rules });
  if (!r.ok) throw new Error(`bad test rules: ${r.errors.join('; ')}`);
  return r.allowlist;
}

async function startOrigin(): Promise<{ origin: Origin; server: http.Server }> {
  const requests: Origin['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '' });
    req.resume();
    req.on('end', () => res.end(`hello ${req.headers.host} ${req.url}\n`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: { port: (server.address() as AddressInfo).port, requests }, server };
}

export async function startInproc(opts: InprocOptions): Promise<Inproc> {
  const { origin, server: originServer } = await startOrigin();
  let allowlist = allowlistOf(typeof opts.rules === 'function' ? opts.rules(origin.port) : opts.rules);
  const current = () => allowlist;
  const audit = new MemoryAudit();
  const upstream = new FakeUpstream(opts.zone);
  const resolver = new Resolver(upstream, {
    guard: opts.guard ?? loopbackOrPublic,
    allowed: (name) => allowlist.decide(name, 'dns').allow,
  });
  const reports: string[] = [];
  const dns = await startDnsServer('127.0.0.1', 0, { allowlist: current, resolver, audit, report: (m) => void reports.push(m) });
  const proxy = await startProxy('127.0.0.1', 0, {
    allowlist: current,
    resolver,
    audit,
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    health: opts.health ?? (() => ({ healthy: true, inproc: true })),
    report: (m) => void reports.push(m),
  });
  return {
    proxy,
    dns,
    audit,
    reports,
    upstream,
    origin,
    allowlist: current,
    setRules(rules) {
      allowlist = allowlistOf(rules);
      resolver.forget((name) => !allowlist.decide(name, 'dns').allow);
      proxy.revoke(allowlist);
    },
    async close() {
      await proxy.close();
      await dns.close();
      originServer.closeAllConnections();
      await new Promise<void>((r) => originServer.close(() => r()));
    },
  };
}

// ---- clients ------------------------------------------------------------------------------------------

export interface DnsReply {
  rcode: number;
  answers: string[];
  message: Message;
}

/** One UDP query of our own making (any type, any name bytes) to the server; bounded by timeoutMs. */
export function dnsQuery(port: number, question: string | Buffer, type = 1, timeoutMs = 3000): Promise<DnsReply> {
  const bytes =
    typeof question === 'string'
      ? encode({
          header: { id: 0x4242, qr: 0, opcode: 0, aa: 0, tc: 0, rd: 1, ra: 0, z: 0, ad: 0, cd: 0, rcode: 0 },
          questions: [{ name: question, type, class: CLASS_IN }],
          answers: [],
          authorities: [],
          additionals: [],
        })
      : question;
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => (sock.close(), reject(new Error(`no DNS answer in ${timeoutMs} ms`))), timeoutMs);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      const m = parseMessage(msg);
      if (!m) return reject(new Error(`unparseable answer ${msg.toString('hex')}`));
      resolve({ rcode: m.header.rcode, answers: m.answers.flatMap((r) => (r.address ? [r.address] : [])), message: m });
    });
    sock.send(bytes, port, '127.0.0.1');
  });
}

export interface ProxyReply {
  status: number;
  headers: Record<string, string>;
  /** The socket after the response head (a tunnel when status is 200). */
  socket: net.Socket;
  /** Bytes after the head already received. */
  rest: Buffer;
}

/** Send `head` (a request head, CONNECT or absolute-form) and read the response head. Bounded by timeoutMs. */
export function proxyRequest(port: number, head: string, timeoutMs = 5000): Promise<ProxyReply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`no response head in ${timeoutMs} ms: ${buf}`))), timeoutMs);
    socket.on('error', (err) => (clearTimeout(timer), reject(err)));
    socket.on('connect', () => socket.write(head));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      const [statusLine = '', ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, socket, rest: buf.subarray(end + 4) });
    };
    socket.on('data', onData);
  });
}

/** Everything the socket sends until it closes (bounded by timeoutMs), after `first`. */
export function readToEnd(socket: net.Socket, first: Buffer = Buffer.alloc(0), timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [first];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.on('close', () => (clearTimeout(timer), resolve(Buffer.concat(parts))));
    socket.on('error', () => undefined);
    socket.resume();
  });
}

export interface Session {
  /** Everything the proxy sent (latin1) until it closed the connection or the session's time was up. */
  reply: string;
  /** The audit lines written meanwhile. */
  audit: AuditEvent[];
}

/**
 * One raw client connection to the proxy: write `parts` in order (a function is run at its turn, e.g.
 * to reload the rules mid-session), `gapMs` apart, then FIN with `end`; read until the proxy closes or
 * `waitMs`.
 */
export async function rawSession(
  g: Inproc,
  parts: Array<string | (() => void)>,
  opts: { waitMs?: number; gapMs?: number; end?: boolean } = {},
): Promise<Session> {
  const before = g.audit.events.length;
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got));
    s.on('connect', async () => {
      for (const p of parts) {
        if (typeof p === 'function') p();
        else if (!s.destroyed) s.write(Buffer.from(p, 'latin1'));
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.end) s.end();
    });
    setTimeout(() => s.destroy(), opts.waitMs ?? 800);
  });
  await new Promise((r) => setTimeout(r, 30));
  return { reply, audit: g.audit.events.slice(before) };
}

export interface TunnelClient {
  s: net.Socket;
  /** The proxy's answer head to the CONNECT. */
  head: string;
  /** What came after the answer head, so far (latin1). */
  data: string;
  /** The gateway ended the connection (its FIN or its close; the client may stay half-open). */
  closed: Promise<void>;
}

/** A client connection (half-open allowed) through the proxy's CONNECT to `host:port`; resolves once the answer head is read. */
export function connectTunnel(proxyPort: number, host: string, port: number, timeoutMs = 3000): Promise<TunnelClient> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    const c: TunnelClient = {
      s,
      head: '',
      data: '',
      closed: new Promise<void>((r) => {
        s.once('end', () => r());
        s.once('close', () => r());
      }),
    };
    s.on('error', () => undefined);
    s.once('connect', () => s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
    s.on('data', (d: Buffer) => {
      if (c.head.includes('\r\n\r\n')) return void (c.data += d.toString('latin1'));
      c.head += d.toString('latin1');
      const end = c.head.indexOf('\r\n\r\n');
      if (end === -1) return;
      c.data = c.head.slice(end + 4);
      c.head = c.head.slice(0, end + 4);
      resolve(c);
    });
    setTimeout(() => reject(new Error('no answer to the CONNECT')), timeoutMs).unref();
  });
}

/**
 * A gateway in front of `origin` (listened on 127.0.0.1, an ephemeral port): `a.test` resolves to it
 * and is allowed on that port. `close` stops both (the origin's open connections too).
 */
export async function gatewayFor(origin: net.Server, name = 'a.test'): Promise<{ g: Inproc; port: number; close(): Promise<void> }> {
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const port = (origin.address() as AddressInfo).port;
  const g = await startInproc({ zone: { [name]: { a: ['127.0.0.1'] } }, rules: [`${name}:${port}`] });
  return {
    g,
    port,
    async close() {
      await g.close();
      (origin as Partial<http.Server>).closeAllConnections?.();
      origin.close();
    },
  };
}

/**
 * An HTTP origin (not listening yet) that keeps what it got in `seen` (`METHOD url`; `UPGRADE url` for an
 * upgrade, answered 101) and answers `answer <url>`: a path with `slow` in it after `slowMs`, one that
 * starts with `/nolen` without a length.
 */
export function answeringServer(slowMs: number): { server: http.Server; seen: string[] } {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      if (req.url?.startsWith('/nolen')) {
        res.write(`answer ${req.url}\n`);
        return void res.end();
      }
      const answer = () => res.end(`answer ${req.url}\n`);
      if (req.url?.includes('slow')) setTimeout(answer, slowMs);
      else answer();
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, s: net.Socket) => {
    seen.push(`UPGRADE ${req.url}`);
    s.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  return { server, seen };
}
