// The HTTP proxy the sandbox uses: CONNECT tunnels (own handler), absolute-form HTTP and WebSocket
// upgrades (http-proxy), /healthz. Every request is decided on its own, keep-alive included.
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Allowlist, Decision, DenyReason } from '../policy/allowlist.js';
import type { Audit, AuditEvent } from '../audit.js';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { normalizeName } from '../policy/names.js';
import { readClientHello, MAX_HELLO_BYTES } from './clienthello.js';
import { hostHeaderMatches, parseAbsoluteUrl, parseAuthority } from './target.js';

export const DENY_HEADER = 'x-codex-egress-deny';

export interface ProxyLimits {
  /** Upstream TCP connect timeout. */
  connectTimeoutMs: number;
  /** Time allowed for a client to send complete request headers (slowloris). */
  headersTimeoutMs: number;
  /** A tunnel or connection with no traffic in either direction for this long is closed. */
  idleTimeoutMs: number;
  /** Time a CONNECT client has to send its first bytes (the TLS ClientHello). */
  helloTimeoutMs: number;
  maxHeaderBytes: number;
  maxConnectionsPerClient: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 15 * 60_000,
  helloTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  maxConnectionsPerClient: 512,
};

export interface ProxyOptions {
  allowlist: () => Allowlist;
  resolver: Resolver;
  audit: Audit;
  limits: ProxyLimits;
  /** /healthz body and whether the gateway is healthy. */
  health: () => { healthy: boolean; [k: string]: unknown };
}

export interface Tunnel {
  client: string;
  host: string;
  port: number;
  ip: string;
  close(reason: 'policy-reload' | 'shutdown'): void;
  /** Settles once the tunnel is closed and its tunnel_close line written. */
  closed: Promise<void>;
}

export interface ProxyServer {
  address: net.AddressInfo;
  tunnels: ReadonlySet<Tunnel>;
  /** Stop accepting; close open tunnels and connections. */
  close(): Promise<void>;
}

type RequestAudit = Extract<AuditEvent, { event: 'connect' | 'http' }>;

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade'];

function stripHopByHop(headers: http.IncomingHttpHeaders, keepUpgrade: boolean): void {
  const listed = String(headers.connection ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
  for (const h of [...HOP_BY_HOP, ...listed]) {
    if (keepUpgrade && (h === 'upgrade' || h === 'connection')) continue;
    delete headers[h];
  }
  if (keepUpgrade) headers.connection = 'Upgrade';
}

const lookupDeny = (r: Exclude<Lookup, { status: 'ok' }>): { reason: DenyReason; status: number; detail: string } =>
  r.status === 'refused'
    ? { reason: 'private-address', status: 403, detail: `resolves to a non-public address (${r.ips.join(', ')})` }
    : { reason: 'resolve-failed', status: 502, detail: r.status === 'servfail' ? r.detail : `name has no IPv4 address (${r.status})` };

function denyBody(reason: string, detail?: string): string {
  return `codex-egress: request blocked (${reason})${detail ? `: ${detail}` : ''}\n`;
}

/** Write a complete HTTP error response on a raw socket (CONNECT and upgrade paths) and close it. */
function rawReply(socket: Duplex, status: number, reason: string, detail?: string): void {
  const body = denyBody(reason, detail);
  const text = http.STATUS_CODES[status] ?? 'Error';
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\n${DENY_HEADER}: ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  setTimeout(() => socket.destroy(), 1000).unref();
}

export async function startProxy(host: string, port: number, opts: ProxyOptions): Promise<ProxyServer> {
  const { limits, audit } = opts;
  const tunnels = new Set<Tunnel>();
  const perClient = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false, agent, proxyTimeout: limits.idleTimeoutMs, ws: true });
  // http-proxy kills the process on an unhandled 'error': answer 502 or drop the socket instead.
  proxy.on('error', (err, _req, resOrSocket) => {
    if (resOrSocket instanceof http.ServerResponse) {
      if (!resOrSocket.headersSent) {
        resOrSocket.writeHead(502, { [DENY_HEADER]: 'upstream-error', 'content-type': 'text/plain' });
      }
      resOrSocket.end(`codex-egress: upstream error: ${err.message}\n`);
    } else {
      (resOrSocket as net.Socket | undefined)?.destroy();
    }
  });

  const log = (e: RequestAudit) => audit.write(e);

  /** Decide a name target and resolve it; undefined when the answer is already sent/refused. */
  async function admit(
    kind: 'connect' | 'http',
    client: string,
    rawHost: string,
    port: number,
    refuse: (status: number, reason: DenyReason, detail?: string) => void,
    method?: string,
  ): Promise<{ decision: Decision; ip: string } | undefined> {
    const d = opts.allowlist().decide(rawHost, kind, port);
    const base = { event: kind, client, host: d.host ?? rawHost.slice(0, 255), port, method, rule: d.rule } as const;
    if (!d.allow) {
      log({ ...base, decision: 'deny', reason: d.reason, status: 403 });
      refuse(403, d.reason as DenyReason);
      return undefined;
    }
    const r = await opts.resolver.lookup(d.host!);
    if (r.status !== 'ok') {
      const x = lookupDeny(r);
      log({ ...base, decision: 'deny', reason: x.reason, status: x.status, detail: x.detail });
      refuse(x.status, x.reason, x.detail);
      return undefined;
    }
    return { decision: d, ip: r.ips[0]! };
  }

  async function onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const client = socket.remoteAddress ?? '';
    const refuse = (status: number, reason: DenyReason, detail?: string) => rawReply(socket, status, reason, detail);
    const t = parseAuthority(req.url ?? '');
    if (!t.ok) {
      log({ event: 'connect', client, host: String(req.url).slice(0, 255), port: 0, decision: 'deny', reason: 'bad-request', status: 400, detail: t.detail });
      return refuse(400, 'bad-request', t.detail);
    }
    const admitted = await admit('connect', client, t.host, t.port, refuse);
    if (!admitted || socket.destroyed) return;
    const { decision, ip } = admitted;
    const name = decision.host!;
    const base = { event: 'connect', client, host: name, port: t.port, ip, rule: decision.rule } as const;
    const upstream = net.connect({ host: ip, port: t.port, allowHalfOpen: true });
    upstream.setTimeout(limits.connectTimeoutMs, () => upstream.destroy(new Error(`connect timeout after ${limits.connectTimeoutMs} ms`)));
    const started = Date.now();
    let closedBy: Extract<AuditEvent, { event: 'tunnel_close' }>['closed_by'] | undefined;
    let open = false;
    const finish = (by: NonNullable<typeof closedBy>) => {
      closedBy ??= by;
      socket.destroy();
      upstream.destroy();
    };
    const closed = new Promise<void>((resolve) => socket.once('close', () => setImmediate(resolve)));
    const tunnel: Tunnel = { client, host: name, port: t.port, ip, close: (reason) => finish(reason), closed };
    upstream.on('error', (err) => {
      if (!open) {
        log({ ...base, decision: 'error', reason: 'upstream-connect-failed', status: 502, detail: err.message });
        rawReply(socket, 502, 'upstream-connect-failed', err.message);
      } else finish('error');
    });
    socket.on('error', () => finish('error'));
    upstream.once('connect', () => {
      open = true;
      upstream.setTimeout(0);
      tunnels.add(tunnel);
      log({ ...base, decision: 'allow', reason: 'allowed', status: 200 });
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      socket.setTimeout(limits.idleTimeoutMs, () => finish('idle-timeout'));
      upstream.pipe(socket);
      inspectFirstBytes();
    });
    upstream.on('end', () => (closedBy ??= 'upstream'));
    socket.on('end', () => (closedBy ??= 'client'));
    socket.on('close', () => {
      upstream.destroy();
      tunnels.delete(tunnel);
      if (open) {
        audit.write({
          event: 'tunnel_close',
          client,
          host: name,
          port: t.port,
          ip,
          bytes_up: upstream.bytesWritten,
          bytes_down: upstream.bytesRead,
          ms: Date.now() - started,
          closed_by: closedBy ?? 'client',
        });
      }
    });
    upstream.on('close', () => {
      if (!socket.destroyed && socket.writableEnded === false && !open) socket.destroy();
    });

    // The client's first bytes decide whether the tunnel may carry on: a TLS ClientHello must name the
    // CONNECT host; anything but TLS is refused on a default (443) rule.
    const tlsRequired = t.port === 443;
    function inspectFirstBytes(): void {
      let buf = head;
      const helloTimer = setTimeout(() => (tlsRequired ? reject('tls-required', 'no ClientHello in time') : pass()), limits.helloTimeoutMs);
      socket.once('close', () => clearTimeout(helloTimer));
      const reject = (reason: 'sni-mismatch' | 'tls-required', detail: string) => {
        clearTimeout(helloTimer);
        log({ ...base, decision: 'deny', reason, detail });
        finish(reason);
      };
      const pass = () => {
        clearTimeout(helloTimer);
        socket.removeListener('data', onData);
        if (buf.length) upstream.write(buf);
        socket.pipe(upstream);
      };
      const check = () => {
        const h = readClientHello(buf);
        if (h.status === 'need-more') return buf.length > MAX_HELLO_BYTES ? reject('sni-mismatch', 'ClientHello too large') : undefined;
        if (h.status === 'not-tls') return tlsRequired ? reject('tls-required', 'the tunnel did not start with TLS') : pass();
        if (h.status === 'invalid') return reject('sni-mismatch', h.detail);
        const sni = h.sni === undefined ? undefined : normalizeName(h.sni);
        if (!sni || !sni.ok || sni.name !== name) return reject('sni-mismatch', `SNI ${JSON.stringify(h.sni ?? null)} is not ${name}`);
        pass();
      };
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        check();
      };
      socket.on('data', onData);
      if (buf.length) check();
    }
  }

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const client = req.socket.remoteAddress ?? '';
    const url = req.url ?? '';
    if (url.startsWith('/')) {
      if (req.method === 'GET' && (url === '/healthz' || url.startsWith('/healthz?'))) {
        const h = opts.health();
        res.writeHead(h.healthy ? 200 : 503, { 'content-type': 'application/json' });
        return void res.end(`${JSON.stringify(h)}\n`);
      }
      res.writeHead(400, { [DENY_HEADER]: 'bad-request', 'content-type': 'text/plain' });
      return void res.end(denyBody('bad-request', 'this is a proxy: send absolute-form requests or CONNECT'));
    }
    void forward(req, client, (status, reason, detail) => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { [DENY_HEADER]: reason, 'content-type': 'text/plain', connection: 'close' });
      res.end(denyBody(reason, detail));
    }).then((target) => {
      if (!target) return;
      const base = target.audit;
      res.on('close', () => log({ ...base, decision: 'allow', reason: 'allowed', status: res.statusCode }));
      proxy.web(req, res, { target: target.url });
    });
  }

  /** Checks shared by plain HTTP and WebSocket upgrades; rewrites the request for the origin server. */
  async function forward(
    req: http.IncomingMessage,
    client: string,
    refuse: (status: number, reason: DenyReason, detail?: string) => void,
  ): Promise<{ url: string; audit: RequestAudit } | undefined> {
    const method = req.method;
    const t = parseAbsoluteUrl(req.url ?? '');
    const hostHeaders = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length;
    const bad = (detail: string, host = '', port = 0) => {
      log({ event: 'http', client, host, port, method, decision: 'deny', reason: 'bad-request', status: 400, detail });
      refuse(400, 'bad-request', detail);
      return undefined;
    };
    if (!t.ok) return bad(t.detail);
    if (hostHeaders !== 1) return bad('exactly one Host header is required', t.host, t.port);
    const admitted = await admit('http', client, t.host, t.port, refuse, method);
    if (!admitted) return undefined;
    const { decision, ip } = admitted;
    const base = { event: 'http', client, host: decision.host!, port: t.port, ip, method, rule: decision.rule } as const;
    if (!hostHeaderMatches(req.headers.host, t.host, t.port)) {
      log({ ...base, decision: 'deny', reason: 'host-mismatch', status: 403, detail: `Host: ${String(req.headers.host).slice(0, 255)}` });
      refuse(403, 'host-mismatch', 'the Host header must name the URL host');
      return undefined;
    }
    stripHopByHop(req.headers, req.headers.upgrade?.toLowerCase() === 'websocket');
    req.url = t.path;
    return { url: `http://${ip}:${t.port}`, audit: { ...base, decision: 'allow', reason: 'allowed' } };
  }

  function onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const client = socket.remoteAddress ?? '';
    socket.on('error', () => socket.destroy());
    if (String(req.headers.upgrade).toLowerCase() !== 'websocket' || !(req.url ?? '').startsWith('http:')) {
      log({ event: 'http', client, host: '', port: 0, method: req.method, decision: 'deny', reason: 'bad-request', status: 400, detail: 'only absolute-form WebSocket upgrades are proxied' });
      return rawReply(socket, 400, 'bad-request', 'only absolute-form WebSocket upgrades are proxied');
    }
    void forward(req, client, (status, reason, detail) => rawReply(socket, status, reason, detail)).then((target) => {
      if (!target) return;
      log({ ...target.audit, status: 101 });
      proxy.ws(req, socket, head, { target: target.url });
      // After proxy.ws, which clears socket timeouts: idle in both directions closes the stream.
      socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
    });
  }

  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: 5_000,
    // How often the headers timeout is enforced (Node's default, 30 s, would let a slow client linger).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
  });
  server.timeout = limits.idleTimeoutMs;
  server.on('connection', (socket: net.Socket) => {
    const client = socket.remoteAddress ?? '';
    const n = (perClient.get(client) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      socket.destroy();
      return;
    }
    perClient.set(client, n);
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      sockets.delete(socket);
      const left = (perClient.get(client) ?? 1) - 1;
      if (left <= 0) perClient.delete(client);
      else perClient.set(client, left);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    rawReply(socket, status, 'bad-request', err.code);
  });
  server.on('request', onRequest);
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    onConnect(req, socket, head).catch((err: Error) => {
      process.stderr.write(`codex-egress: connect: ${err.stack ?? err.message}\n`);
      socket.destroy();
    });
  });
  server.on('upgrade', onUpgrade);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => process.stderr.write(`codex-egress: proxy: ${err.message}\n`));

  return {
    address: server.address() as net.AddressInfo,
    tunnels,
    close: async () => {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      const open = [...tunnels];
      for (const t of open) t.close('shutdown');
      for (const s of sockets) s.destroy();
      agent.destroy();
      await Promise.all([closing, ...open.map((t) => t.closed)]);
    },
  };
}
