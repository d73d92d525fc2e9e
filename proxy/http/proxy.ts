// The HTTP proxy the sandbox uses, wired from small parts: admit (decide + resolve + re-check),
// connect (CONNECT tunnels and their first-bytes check), forward (plain HTTP and WebSocket, exact
// framing), plain (the fast path of plain HTTP), absolute (an absolute-form request's checks), in-tunnel
// (requests inside plain-HTTP tunnels), reply (refusals, lingering close), registry (every open
// connection, for revocation). This file is the server: listen, limits, the routes, and close.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Allowlist } from '../policy/allowlist.js';
import type { ProxyLimits } from '../config.js';
import type { Audit } from '../audit.js';
import { overLimitCloser, overLimitRefuser } from './overlimit.js';
import type { Resolver } from '../dns/resolver.js';
import { withConnectionScope } from '../lastresort.js';
import { absolute, admitAbsolute } from './absolute.js';
import { handleConnect, openTunnel, type HttpTunnel, type TunnelMode } from './connect.js';
import { dropListenersOnClose } from './closed.js';
import { frontDoor } from './front.js';
import { headerValue } from './head.js';
import { forwardRequest, forwardUpgrade, ownedPool, type ForwardDeps, type RequestAudit } from './forward.js';
import { guarded, handedServer, handToHttp, refusals } from './http-server.js';
import { startTunnelHttp, tunnelOf } from './in-tunnel.js';
import { PIPELINE_PAUSE } from './pipeline.js';
import { plainEligible, plainExchange, releasePlain, type PlainDeps } from './plain.js';
import { LiveList } from '../live-list.js';
import { Registry, type Connection } from './registry.js';
import { rawReply, refuseResponse } from './reply.js';
import { credentialFor, intercept, type InjectOptions } from '../inject/tunnel.js';
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

export async function startProxy(host: string, port: number, opts: ProxyOptions): Promise<ProxyServer> {
  const { limits, audit } = opts;
  const registry = new Registry();
  const perClient = new Map<string, number>();
  const sockets = new LiveList<net.Socket>();
  // Origin connections per client connection and host (ownedPool): its requests are forwarded one at a
  // time (pipeline.ts), so one is kept; the bound is a second guard.
  const agent = ownedPool(new http.Agent({ keepAlive: true, maxSockets: PIPELINE_PAUSE }));
  const tlsAgent = ownedPool(new https.Agent({ keepAlive: true, maxSockets: PIPELINE_PAUSE }));
  const fdeps: ForwardDeps = { allowlist: opts.allowlist, audit, agent, tlsAgent, idleTimeoutMs: limits.idleTimeoutMs };
  const log = (e: RequestAudit) => audit.write(e);
  const adeps = { allowlist: opts.allowlist, resolver: opts.resolver, registry, log };
  const refused = refusals(log, tunnelOf, limits.headersTimeoutMs);
  /** Requests inside plain-HTTP tunnels (in-tunnel.ts). */
  const inTunnel = startTunnelHttp({ allowlist: opts.allowlist, registry, forward: fdeps, limits, report: opts.report });
  const toHttp = inTunnel.toHttp;

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
      refused.auditRefusal(req.socket, 400, detail, req);
      return refuseResponse(res, 400, 'bad-request', detail);
    }
    const ok = await admitAbsolute(adeps, absolute(req), client, 'request', (status, reason, detail) =>
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
        adeps,
        { method: h.method, url: h.target, httpVersion: h.version, rawHeaders: h.headers, host: headerValue(h.headers, 'host') },
        client,
        'request',
        refuse,
      ),
    next: (socket, read) => front.accept(socket, read, true),
  };

  /** Absolute-form WebSocket upgrades. */
  async function onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const client = socket.remoteAddress ?? '';
    socket.on('error', () => socket.destroy());
    const ok = await admitAbsolute(adeps, absolute(req), client, 'websocket', (status, reason, detail) =>
      rawReply(socket, status, reason, detail),
    );
    if (!ok) return;
    if (socket.destroyed) return ok.done();
    forwardUpgrade(fdeps, socket, head, ok);
  }

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

  // `listener` below hands it the connections that do not open with a clean CONNECT head or a request
  // plain.ts takes, in their connection's scope already.
  const server = handedServer(limits);
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
    timedOut: (socket) => refused.clientError(Object.assign(new Error('headers timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket),
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    front.parsed(socket);
    refused.clientError(err, socket);
  });
  server.on(
    'checkExpectation',
    guarded(
      opts.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) => {
        front.parsed(req.socket);
        // In its connection's order, counted against its pipeline like any request (ATTACK13).
        return refused.inOrder(req, res, () => refused.expectation(req, res));
      },
    ),
  );
  server.on(
    'request',
    guarded(
      opts.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) => {
        front.parsed(req.socket);
        return refused.inOrder(req, res, () => onRequest(req, res));
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
        if (refused.outOfTurn(req, socket)) return;
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
        if (refused.outOfTurn(req, socket)) return;
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
      inTunnel.server.close();
      const open = registry.all();
      for (const c of open) registry.close(c, 'shutdown');
      for (const s of sockets.values()) s.destroy();
      agent.destroy();
      tlsAgent.destroy();
      await Promise.all([closing, ...open.map((c) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 2000).unref())]))]);
    },
  };
}
