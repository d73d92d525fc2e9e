// Requests inside a plain-HTTP tunnel (a CONNECT, or a transparent connection, whose first bytes were
// HTTP: connect.ts hands the socket over with `toHttp`). They are parsed by an HTTP server of their own
// and checked one by one against the tunnel: origin form, framing, Host naming the tunnel's host, the
// tunnel still allowed, and for a host with an injected credential the credential rewrite. Each request
// goes to the tunnel's checked address.
import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyLimits } from '../config.js';
import type { Allowlist } from '../policy/allowlist.js';
import type { Report } from '../report.js';
import { rewriteCredential } from '../inject/rewrite.js';
import type { HttpTunnel } from './connect.js';
import { checkRequestHead } from './framing.js';
import { forwardRequest, forwardUpgrade, type ForwardDeps, type RequestAudit } from './forward.js';
import { guarded, handedServer, handToHttp, refusals, scopeConnections } from './http-server.js';
import { revokedDetail, stillAllowed, type Registry } from './registry.js';
import { rawReply, refuseResponse } from './reply.js';
import { hostHeaderMatches } from './target.js';
import { quoted } from '../quoted.js';

export interface InTunnelDeps {
  allowlist: () => Allowlist;
  registry: Registry;
  forward: ForwardDeps;
  limits: ProxyLimits;
  report: Report;
}

/** The tunnel a socket handed over with `toHttp` belongs to (sockets the HTTP checks serve). */
const tunnels = new WeakMap<Duplex, HttpTunnel>();
export const tunnelOf = (socket: Duplex): HttpTunnel | undefined => tunnels.get(socket);

/** The HTTP server of plain-HTTP tunnels, and `toHttp`, which gives it a tunnel's socket. */
export function startTunnelHttp(deps: InTunnelDeps): {
  server: http.Server;
  toHttp(socket: net.Socket, bytes: Buffer, tunnel: HttpTunnel): void;
} {
  const log = (e: RequestAudit) => deps.forward.audit.write(e);
  const refused = refusals(log, tunnelOf, deps.limits.headersTimeoutMs);
  const server = handedServer(deps.limits);
  scopeConnections(server);
  server.on('clientError', refused.clientError);
  server.on(
    'request',
    guarded(
      deps.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) =>
        refused.inOrder(req, res, () => {
          const f = tunnelRequest(deps, log, req, false, (status, reason, detail) => refuseResponse(res, status, reason, detail));
          if (f) forwardRequest(deps.forward, req, res, f);
        }),
    ),
  );
  server.on(
    'upgrade',
    guarded(
      deps.report,
      ([, socket]) => socket,
      (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        socket.on('error', () => socket.destroy());
        if (refused.outOfTurn(req, socket)) return;
        if (String(req.headers.upgrade).toLowerCase() !== 'websocket') {
          const detail = 'only WebSocket upgrades are proxied';
          refused.auditRefusal(socket, 400, detail, req);
          return rawReply(socket, 400, 'bad-request', detail);
        }
        const f = tunnelRequest(deps, log, req, true, (status, reason, detail) => rawReply(socket, status, reason, detail));
        if (f) forwardUpgrade(deps.forward, socket, head, f);
      },
    ),
  );
  server.on(
    'checkExpectation',
    guarded(
      deps.report,
      ([req]) => req.socket,
      (req: http.IncomingMessage, res: http.ServerResponse) => refused.inOrder(req, res, () => refused.expectation(req, res)),
    ),
  );
  server.on(
    'connect',
    guarded(
      deps.report,
      ([, socket]) => socket,
      (req: http.IncomingMessage, socket: Duplex) => {
        // Behind unanswered requests its 400 would be read as their answer (ATTACK13): closed instead.
        if (refused.outOfTurn(req, socket)) return;
        refused.auditRefusal(socket, 400, 'CONNECT inside a tunnel', req);
        rawReply(socket, 400, 'bad-request', 'CONNECT inside a tunnel');
      },
    ),
  );
  return {
    server,
    toHttp: (socket, bytes, tunnel) => {
      // A reload still closes the whole tunnel (connect.ts keeps its onClose); its requests go with it.
      tunnels.set(socket, tunnel);
      handToHttp(server, socket, bytes);
    },
  };
}

/** The checks of one request inside a tunnel: the forward (to the tunnel's address), or undefined once refused. */
function tunnelRequest(
  deps: InTunnelDeps,
  log: (e: RequestAudit) => void,
  req: http.IncomingMessage,
  upgrade: boolean,
  refuse: (status: number, reason: RequestAudit['reason'] & string, detail: string) => void,
): Parameters<typeof forwardRequest>[3] | undefined {
  const tunnel = tunnels.get(req.socket);
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
    return no(403, 'host-mismatch', `Host ${quoted(req.headers.host)} is not the tunnel's host ${tunnel.host}`);
  }
  if (!stillAllowed(tunnel.conn, deps.allowlist)) return no(403, 'policy-reload', revokedDetail(tunnel.conn));
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
  const { conn, done } = deps.registry.add({
    kind: upgrade ? 'websocket' : 'request',
    client: tunnel.client,
    host: tunnel.host,
    port: tunnel.port,
    via: tunnel.conn.via,
  });
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
