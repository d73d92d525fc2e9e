// The HTTP proxy the sandbox uses, wired from small parts: admit (decide + resolve + re-check),
// connect (CONNECT tunnels and their first-bytes check), forward (plain HTTP and WebSocket, exact
// framing), reply (refusals, lingering close), registry (every open connection, for revocation).
// This file is the server: listen, limits, the routes, and close.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Allowlist } from '../policy/allowlist.js';
import type { ProxyLimits } from '../config.js';
import type { Audit } from '../audit.js';
import { overLimitCloser, overLimitRefuser } from './overlimit.js';
import type { Resolver } from '../dns/resolver.js';
import { withConnectionScope } from '../lastresort.js';
import { admit } from './admit.js';
import { handleConnect, openTunnel, type HttpTunnel, type TunnelMode } from './connect.js';
import { checkRequestHead } from './framing.js';
import { dropListenersOnClose } from './closed.js';
import { frontDoor } from './front.js';
import { headerValue } from './head.js';
import { forwardRequest, forwardUpgrade, type Forward, type ForwardDeps, type RequestAudit } from './forward.js';
import { plainEligible, plainExchange, releasePlain, type PlainDeps } from './plain.js';
import { LiveList } from '../live-list.js';
import { Registry, revokedDetail, stillAllowed, type Connection } from './registry.js';
import { rawReply, refuseResponse } from './reply.js';
import { hostHeaderMatches, parseAbsoluteUrl } from './target.js';
import { credentialFor, intercept, type InjectOptions } from '../inject/tunnel.js';
import { rewriteCredential } from '../inject/rewrite.js';
import type { Report } from '../report.js';

export { DENY_HEADER } from './reply.js';

/** The proxy's listen backlog (capped by the kernel's net.core.somaxconn). */
export const LISTEN_BACKLOG = 4096;

export type { ProxyLimits } from '../config.js';

export interface ProxyOptions {
  allowlist: () => Allowlist;
  resolver: Resolver;
  audit: Audit;
  limits: ProxyLimits;
  /** /healthz body and whether the gateway is healthy. */
  health: () => { healthy: boolean; [k: string]: unknown };
  /** Credential injection: the hosts whose tunnels the gateway terminates, and the CA it does it with. */
  inject?: InjectOptions;
  /** What the operator should see and the proxy survives: an internal error in one connection, a server error. */
  report: Report;
}

export interface ProxyServer {
  address: net.AddressInfo;
  /** Every connection open for a host (tunnels, WebSockets, requests in flight). */
  connections(): Connection[];
  /** Close the connections `allowlist` no longer allows; returns them. */
  revoke(allowlist: Allowlist): Connection[];
  /** A client connection to a pool address that stands for `host` (proxy/transparent/): the CONNECT path without the CONNECT. */
  transparent(socket: net.Socket, host: string, port: number, via: TunnelMode['via']): void;
  /** Stop accepting; close open tunnels and connections. */
  close(): Promise<void>;
}

/** What the checks of an absolute-form request read from it: from http.Server's request, or from head.ts. */
interface AbsoluteRequest {
  method: string;
  url: string;
  httpVersion: string;
  rawHeaders: string[];
  /** The Host header (one: checkRequestHead refuses two), and Upgrade. */
  host: string | undefined;
  upgrade?: string;
}

const absolute = (req: http.IncomingMessage): AbsoluteRequest => ({
  method: req.method ?? '',
  url: req.url ?? '',
  httpVersion: req.httpVersion,
  rawHeaders: req.rawHeaders,
  host: req.headers.host,
  upgrade: req.headers.upgrade,
});

/** Report an internal error of one connection and close it; the gateway keeps serving the others. */
function internalError(report: Report, err: unknown, socket: Duplex | undefined): void {
  report(`proxy: internal error, connection closed: ${(err as Error)?.stack ?? String(err)}`);
  socket?.destroy();
}

/** A handler whose exceptions (thrown, or its promise rejected) close its connection only. */
function guarded<A extends unknown[]>(report: Report, socketOf: (a: A) => Duplex | undefined, fn: (...a: A) => unknown): (...a: A) => void {
  return (...a: A) => {
    try {
      const r = fn(...a);
      if (r instanceof Promise) r.catch((err: unknown) => internalError(report, err, socketOf(a)));
    } catch (err) {
      internalError(report, err, socketOf(a));
    }
  };
}

/**
 * Every connection a server accepts is handled in its own scope (lastresort.ts): its parser, its
 * sockets' events, and what they start. An exception nothing caught there closes that connection only.
 */
function scopeConnections(server: http.Server): void {
  const emit = server.emit as (this: http.Server, event: string | symbol, ...args: unknown[]) => boolean;
  server.emit = function (this: http.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'connection') return emit.call(this, event, ...args);
    const socket = args[0] as net.Socket;
    return withConnectionScope(socket, () => emit.call(this, event, ...args)) ?? true;
  } as typeof server.emit;
}

/**
 * Give `server` a connection whose first bytes were read already (by the front door, or by a tunnel's
 * first-bytes check): its parser gets them before anything the socket reads next, and then the end if
 * the client's FIN was read too (its 'end' already emitted: the parser would otherwise never see it).
 */
function handToHttp(server: http.Server, socket: net.Socket, read: Buffer): void {
  server.emit('connection', socket);
  if (read.length) socket.emit('data', read);
  if (socket.readableEnded) socket.emit('end');
}

/**
 * Let the parser hand over every header. By default Node passes only the first 1000 to the request
 * (rawHeaders included) while it still frames the body by all of them, so a Transfer-Encoding or
 * Content-Length after 1000 filler headers would frame the body without the framing checks (or the
 * forwarded request) ever seeing it: a smuggled second request. maxHeaderBytes bounds the cost.
 */
function noHeaderCountLimit(server: http.Server): void {
  server.maxHeadersCount = 0;
}

export async function startProxy(host: string, port: number, opts: ProxyOptions): Promise<ProxyServer> {
  const { limits, audit } = opts;
  const registry = new Registry();
  const perClient = new Map<string, number>();
  const sockets = new LiveList<net.Socket>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: 256 });
  const fdeps: ForwardDeps = { allowlist: opts.allowlist, audit, agent, tlsAgent, idleTimeoutMs: limits.idleTimeoutMs };
  const adeps = { allowlist: opts.allowlist, resolver: opts.resolver, registry };
  /** Plain-HTTP tunnels: the HTTP server their requests are parsed by, and which tunnel a socket is. */
  const tunnelOf = new WeakMap<Duplex, HttpTunnel>();

  const log = (e: RequestAudit) => audit.write(e);

  /** Absolute-form `http://` requests: checked, admitted and forwarded one by one. */
  async function onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const client = req.socket.remoteAddress ?? '';
    const url = req.url ?? '';
    const method = req.method ?? '';
    if (url.startsWith('/')) {
      if (method === 'GET' && (url === '/healthz' || url.startsWith('/healthz?'))) {
        const h = opts.health();
        res.writeHead(h.healthy ? 200 : 503, { 'content-type': 'application/json' });
        return void res.end(`${JSON.stringify(h)}\n`);
      }
      const detail = 'this is a proxy: send absolute-form requests or CONNECT';
      auditRefusal(req.socket, 400, detail, method);
      return refuseResponse(res, 400, 'bad-request', detail);
    }
    const ok = await admitAbsolute(absolute(req), client, 'request', (status, reason, detail) =>
      refuseResponse(res, status, reason, detail),
    );
    if (!ok) return;
    if (res.destroyed || req.socket.destroyed) return ok.done();
    forwardRequest(fdeps, req, res, ok);
  }

  /** The plain-HTTP forwarder of the proxy port (plain.ts), for the requests the front door reads itself. */
  const pdeps: PlainDeps = {
    allowlist: opts.allowlist,
    audit,
    idleTimeoutMs: limits.idleTimeoutMs,
    connectTimeoutMs: limits.connectTimeoutMs,
    admit: (h, client, refuse) =>
      admitAbsolute(
        { method: h.method, url: h.target, httpVersion: h.version, rawHeaders: h.headers, host: headerValue(h.headers, 'host') },
        client,
        'request',
        refuse,
      ),
    next: (socket, read) => front.accept(socket, read, true),
  };

  /**
   * An absolute-form request or WebSocket upgrade: URL, framing, decision + lookup, Host header. Every
   * refusal is audited and answered through `refuse`; undefined then.
   */
  async function admitAbsolute(
    req: AbsoluteRequest,
    client: string,
    via: 'request' | 'websocket',
    refuse: (status: number, reason: string, detail?: string) => void,
  ): Promise<Omit<Forward, 'tls'> | undefined> {
    const method = req.method;
    const t = parseAbsoluteUrl(req.url);
    const bad = (detail: string, h = '', p = 0) => {
      log({ event: 'http', client, host: h, port: p, method, decision: 'deny', reason: 'bad-request', status: 400, detail });
      refuse(400, 'bad-request', detail);
    };
    if (via === 'websocket' && String(req.upgrade).toLowerCase() !== 'websocket')
      return void bad('only absolute-form WebSocket upgrades are proxied');
    if (!t.ok) return void bad(via === 'websocket' ? 'only absolute-form WebSocket upgrades are proxied' : t.detail);
    const head = checkRequestHead(method, req.httpVersion, req.rawHeaders, via === 'websocket');
    if (!head.ok) return void bad(head.detail, t.host.slice(0, 255), t.port);
    const a = await admit(adeps, via, 'http', client, t.host, t.port);
    if (!a.ok) {
      log({
        event: 'http',
        client,
        host: a.decision.host ?? t.host.slice(0, 255),
        port: t.port,
        method,
        rule: a.decision.rule,
        decision: 'deny',
        reason: a.reason,
        status: a.status,
        detail: a.detail,
      });
      return void refuse(a.status, a.reason, a.detail);
    }
    const base = { event: 'http', client, host: a.decision.host, port: t.port, ip: a.ip, method, rule: a.decision.rule } as const;
    if (!hostHeaderMatches(req.host, a.decision.host, t.port)) {
      a.done();
      log({ ...base, decision: 'deny', reason: 'host-mismatch', status: 403, detail: `Host: ${String(req.host).slice(0, 255)}` });
      return void refuse(403, 'host-mismatch', 'the Host header must name the URL host');
    }
    return { conn: a.conn, done: a.done, ip: a.ip, port: t.port, method, path: t.path, headers: head.headers, audit: base };
  }

  /** Absolute-form WebSocket upgrades. */
  async function onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const client = socket.remoteAddress ?? '';
    socket.on('error', () => socket.destroy());
    const ok = await admitAbsolute(absolute(req), client, 'websocket', (status, reason, detail) =>
      rawReply(socket, status, reason, detail),
    );
    if (!ok) return;
    if (socket.destroyed) return ok.done();
    forwardUpgrade(fdeps, socket, head, ok);
  }

  /**
   * A request inside a plain-HTTP tunnel: origin-form, Host naming the tunnel's host, framed exactly;
   * it goes to the tunnel's checked address. Returns the forward, or undefined once refused.
   */
  function tunnelRequest(
    req: http.IncomingMessage,
    upgrade: boolean,
    refuse: (status: number, reason: RequestAudit['reason'] & string, detail: string) => void,
  ): Parameters<typeof forwardRequest>[3] | undefined {
    const tunnel = tunnelOf.get(req.socket);
    const method = req.method ?? '';
    if (!tunnel) return void req.socket.destroy();
    const base = {
      event: 'http',
      client: tunnel.client,
      host: tunnel.host,
      port: tunnel.port,
      ip: tunnel.ip,
      method,
      rule: tunnel.rule,
      ...(tunnel.mode ? { mode: tunnel.mode } : {}),
    } as const;
    const no = (
      status: number,
      reason: 'bad-request' | 'host-mismatch' | 'policy-reload' | 'foreign-credential',
      detail: string,
      extra: Partial<RequestAudit> = {},
    ) => {
      log({ ...base, ...extra, decision: 'deny', reason, status, detail });
      refuse(status, reason, detail);
      return undefined;
    };
    const url = req.url ?? '';
    if (!url.startsWith('/') && !(method === 'OPTIONS' && url === '*'))
      return no(400, 'bad-request', 'a request inside a tunnel must be in origin form');
    const head = checkRequestHead(method, req.httpVersion, req.rawHeaders, upgrade);
    if (!head.ok) return no(400, 'bad-request', head.detail);
    if (!hostHeaderMatches(req.headers.host, tunnel.host, tunnel.port, true)) {
      return no(
        403,
        'host-mismatch',
        `Host ${JSON.stringify(String(req.headers.host).slice(0, 255))} is not the tunnel's host ${tunnel.host}`,
      );
    }
    if (!stillAllowed(tunnel.conn, opts.allowlist)) return no(403, 'policy-reload', revokedDetail(tunnel.conn));
    let headers = head.headers;
    let audited: Omit<RequestAudit, 'decision' | 'reason'> = base;
    if (tunnel.inject) {
      const cred = tunnel.inject.credential;
      const r = rewriteCredential(head.headers, cred);
      if (!r.ok) return no(r.status, r.reason, r.detail, { credential: r.use, credential_name: cred.name });
      // TRACE asks the origin to echo the request back: with the real value in it, to the sandbox
      if (r.use === 'injected' && method === 'TRACE')
        return no(400, 'bad-request', 'a TRACE request is never sent with an injected credential (the origin would echo it)', {
          credential: r.use,
          credential_name: cred.name,
        });
      headers = r.headers;
      audited = { ...base, credential: r.use, credential_name: cred.name };
    }
    let settle!: () => void;
    const conn: Connection = {
      kind: upgrade ? 'websocket' : 'request',
      client: tunnel.client,
      host: tunnel.host,
      port: tunnel.port,
      via: tunnel.conn.via,
      closed: new Promise((r) => (settle = r)),
    };
    const remove = registry.add(conn);
    const done = () => {
      remove();
      settle();
    };
    return {
      conn,
      done,
      ip: tunnel.ip,
      port: tunnel.port,
      method,
      path: url,
      headers,
      audit: audited,
      ...(tunnel.inject ? { tls: tunnel.inject.tls } : {}),
    };
  }

  const serverOptions: http.ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: 5_000,
    // How often the headers timeout is enforced (Node's default, 30 s, would let a slow client linger).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    // A request without Host goes to the proxy's own checks (an audited 400), not Node's silent 400.
    requireHostHeader: false,
  };
  /**
   * The audit line of a refusal the proxy answers before any request is admitted (a head the parser
   * refused or that came too slowly, an expectation, a CONNECT inside a tunnel): inside a plain-HTTP
   * tunnel it names the tunnel's host. Every refusal is audited (ATTACK6).
   */
  const auditRefusal = (socket: Duplex, status: number, detail: string, method?: string) => {
    const tunnel = tunnelOf.get(socket);
    log({
      event: 'http',
      client: tunnel?.client ?? (socket as net.Socket).remoteAddress ?? '',
      host: tunnel?.host ?? '',
      port: tunnel?.port ?? 0,
      ...(tunnel ? { ip: tunnel.ip, rule: tunnel.rule, ...(tunnel.mode ? { mode: tunnel.mode } : {}) } : {}),
      ...(method ? { method } : {}),
      decision: 'deny',
      reason: 'bad-request',
      status,
      detail,
    });
  };
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (socket.writableEnded || socket.destroyed) return;
    auditRefusal(socket, status, String(err.code ?? err.message));
    rawReply(socket, status, 'bad-request', err.code);
  };
  /** `Expect` other than 100-continue (Node would answer 417 itself, unaudited). */
  const onExpectation = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const detail = 'only Expect: 100-continue is understood';
    auditRefusal(req.socket, 417, detail, req.method);
    refuseResponse(res, 417, 'bad-request', detail);
  };

  const inner = http.createServer(serverOptions);
  noHeaderCountLimit(inner);
  scopeConnections(inner);
  inner.timeout = limits.idleTimeoutMs;
  // It never listens itself: 'listening' starts its enforcement of the headers timeout (slowloris
  // inside a tunnel), which Node only starts on listen; inner.close() stops it.
  inner.emit('listening');
  inner.on('clientError', onClientError);
  inner.on(
    'request',
    guarded(
      opts.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) => {
        const f = tunnelRequest(req, false, (status, reason, detail) => refuseResponse(res, status, reason, detail));
        if (f) forwardRequest(fdeps, req, res, f);
      },
    ),
  );
  inner.on(
    'upgrade',
    guarded(
      opts.report,
      ([, socket]) => socket,
      (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        socket.on('error', () => socket.destroy());
        if (String(req.headers.upgrade).toLowerCase() !== 'websocket') {
          return rawReply(socket, 400, 'bad-request', 'only WebSocket upgrades are proxied');
        }
        const f = tunnelRequest(req, true, (status, reason, detail) => rawReply(socket, status, reason, detail));
        if (f) forwardUpgrade(fdeps, socket, head, f);
      },
    ),
  );
  inner.on('checkExpectation', onExpectation);
  inner.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    auditRefusal(socket, 400, 'CONNECT inside a tunnel', 'CONNECT');
    rawReply(socket, 400, 'bad-request', 'CONNECT inside a tunnel');
  });

  const toHttp = (socket: net.Socket, bytes: Buffer, tunnel: HttpTunnel) => {
    // A reload still closes the whole tunnel (connect.ts keeps its onClose); its requests go with it.
    tunnelOf.set(socket, tunnel);
    handToHttp(inner, socket, bytes);
  };
  const idep = opts.inject && {
    inject: opts.inject,
    audit,
    helloTimeoutMs: limits.helloTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    toHttp,
  };
  const cdeps = {
    ...adeps,
    audit,
    limits,
    toHttp,
    intercept: (socket: net.Socket, head: Buffer, tunnel: HttpTunnel, done: () => void) => {
      const cred = credentialFor(opts.inject, tunnel.host, tunnel.port);
      if (!cred || !idep) return false;
      intercept(idep, cred, socket, head, tunnel, done);
      return true;
    },
  };

  const server = http.createServer(serverOptions);
  noHeaderCountLimit(server);
  server.timeout = limits.idleTimeoutMs;
  // It never listens itself: `listener` below hands it the connections that do not open with a clean
  // CONNECT head, in their connection's scope already. 'listening' starts its headers-timeout enforcement.
  server.emit('listening');
  const refuseOverLimit = overLimitRefuser(audit, limits.maxConnectionsPerClient);
  const refuseTransparentOverLimit = overLimitCloser(audit, limits.maxConnectionsPerClient);
  /**
   * Count a client socket against its address's limit; false when over it (then `refuse` answered it:
   * a 429 on the proxy port; on a transparent connection, which speaks no HTTP to us, an audit line and a close).
   */
  const track = (socket: net.Socket, refuse: (socket: net.Socket, client: string) => void = refuseOverLimit): boolean => {
    const client = socket.remoteAddress ?? '';
    const n = (perClient.get(client) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      refuse(socket, client);
      return false;
    }
    perClient.set(client, n);
    const untrack = sockets.add(socket);
    dropListenersOnClose(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      untrack();
      const left = (perClient.get(client) ?? 1) - 1;
      if (left <= 0) perClient.delete(client);
      else perClient.set(client, left);
    });
    return true;
  };
  const front = frontDoor({
    maxHeaderBytes: limits.maxHeaderBytes,
    headersTimeoutMs: limits.headersTimeoutMs,
    connect: guarded(
      opts.report,
      ([socket]) => socket,
      (socket: net.Socket, authority: string, rest: Buffer) => {
        releasePlain(socket);
        return handleConnect(cdeps, authority, socket, rest);
      },
    ),
    request: (socket, head, rest) => {
      if (!plainEligible(head)) return false;
      plainExchange(pdeps, socket, head, rest);
      return true;
    },
    handOver: (socket, read) => {
      releasePlain(socket);
      handToHttp(server, socket, read);
    },
    timedOut: (socket) => onClientError(Object.assign(new Error('headers timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket),
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    front.parsed(socket);
    onClientError(err, socket);
  });
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
    front.parsed(req.socket);
    onExpectation(req, res);
  });
  server.on(
    'request',
    guarded(
      opts.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) => {
        front.parsed(req.socket);
        return onRequest(req, res);
      },
    ),
  );
  server.on(
    'connect',
    guarded(
      opts.report,
      ([, socket]) => socket,
      (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        front.parsed(socket);
        return handleConnect(cdeps, req.url ?? '', socket, head);
      },
    ),
  );
  server.on(
    'upgrade',
    guarded(
      opts.report,
      ([, socket]) => socket,
      (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        front.parsed(socket);
        return onUpgrade(req, socket, head);
      },
    ),
  );
  // The proxy port: each connection counted against its client's limit, then its first bytes read in its own scope.
  const listener = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (track(socket)) withConnectionScope(socket, () => front.accept(socket));
  });

  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    // A deep accept queue (the kernel caps it at net.core.somaxconn): Node's default of 511 drops SYNs
    // when hundreds of clients connect at once, and each drop costs that client a 1 s retransmit.
    listener.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      listener.removeListener('error', reject);
      resolve();
    });
  });
  listener.on('error', (err) => opts.report(`proxy: ${err.message}`));

  return {
    address: listener.address() as net.AddressInfo,
    connections: () => registry.all(),
    revoke: (allowlist) => registry.revoke(allowlist),
    transparent: (socket, host, port, via) => {
      if (!track(socket, refuseTransparentOverLimit)) return;
      socket.setNoDelay(true);
      withConnectionScope(socket, () =>
        guarded(
          opts.report,
          () => socket,
          () => openTunnel(cdeps, socket, socket.remoteAddress ?? '', host, port, Buffer.alloc(0), { mode: 'transparent', via }),
        )(),
      );
    },
    close: async () => {
      const closing = new Promise<void>((resolve) => listener.close(() => resolve()));
      server.close();
      inner.close();
      const open = registry.all();
      for (const c of open) registry.close(c, 'shutdown');
      for (const s of sockets.values()) s.destroy();
      agent.destroy();
      tlsAgent.destroy();
      await Promise.all([closing, ...open.map((c) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 2000).unref())]))]);
    },
  };
}
