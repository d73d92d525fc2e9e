// A CONNECT tunnel: admit, dial the checked address, re-check, then the first-bytes check until the
// tunnel is a plain pipe (or is handed to the HTTP checks, or closed), and its tunnel_close line.
import net from 'node:net';
import { admit, revokedRefusal, type AdmitDeps } from './admit.js';
import { dropListenersOnClose } from './closed.js';
import { FirstBytes, type Verdict } from './firstbytes.js';
import { whenRefused } from './pipeline.js';
import type { ForwardDeps, RequestAudit } from './forward.js';
import { stillAllowed, type Connection } from './registry.js';
import { rawReply } from './reply.js';
import { relay, UpstreamReads } from './relay.js';
import { parseAuthority } from './target.js';

import type { ClosedBy } from '../reasons.js';
import type { Credential } from '../inject/credentials.js';
import type { UpstreamTls } from '../inject/tunnel.js';

export interface ConnectLimits {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  helloTimeoutMs: number;
}

/** A tunnel whose first bytes are plain HTTP: its requests are checked one by one against it. */
export interface HttpTunnel {
  conn: Connection;
  client: string;
  host: string;
  port: number;
  ip: string;
  rule: RequestAudit['rule'];
  mode?: 'transparent';
  /** Credential injection (proxy/inject): the credential whose header each request gets, and the upstream TLS. */
  inject?: { credential: Credential; tls: UpstreamTls };
}

export interface ConnectDeps extends AdmitDeps {
  audit: ForwardDeps['audit'];
  limits: ConnectLimits;
  /** Give the client socket (with these bytes put back) to the HTTP checks, bound to the tunnel. */
  toHttp(socket: net.Socket, bytes: Buffer, tunnel: HttpTunnel): void;
  /** Take over a tunnel to a host with an injected credential (proxy/inject/tunnel.ts); false: not such a host. */
  intercept?(socket: net.Socket, head: Buffer, tunnel: HttpTunnel, done: () => void): boolean;
}

export { RELAY_BUFFER } from './relay.js';

/** The answer to an admitted CONNECT, encoded once (never written to: a queued write may refer to it). */
const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/**
 * A CONNECT request for `target` (its request-target as sent: read by the proxy port's front door,
 * front.ts, or by http.Server); `head`: the client bytes that followed its head.
 */
export async function handleConnect(deps: ConnectDeps, target: string, socket: net.Socket, head: Buffer): Promise<void> {
  const client = socket.remoteAddress ?? '';
  socket.on('error', () => socket.destroy());
  const t = parseAuthority(target);
  if (!t.ok) {
    deps.audit.write({
      event: 'connect',
      client,
      host: target.slice(0, 255),
      port: 0,
      decision: 'deny',
      reason: 'bad-request',
      status: 400,
      detail: t.detail,
    });
    return rawReply(socket, 400, 'bad-request', t.detail);
  }
  return openTunnel(deps, socket, client, t.host, t.port, head, CONNECT_MODE);
}

/** How a tunnel was asked for: CONNECT (answered with a status line), or a connection to a pool address (transparent/). */
export interface TunnelMode {
  mode: 'connect' | 'transparent';
  /** What the name is decided as (transparent: `http` on port 80, so a rule without a port allows it). */
  via: Connection['via'];
}
export const CONNECT_MODE: TunnelMode = { mode: 'connect', via: 'connect' };

/**
 * The tunnel to `host:port` for a client socket: admit, dial, first-bytes check, pipe, audit. In
 * transparent mode nothing is written to the client before the origin's bytes (a refusal closes the
 * socket), a rule without a port carries on port 80 what a named port carries (its checks included),
 * and the audit lines say `mode: transparent`.
 */
export async function openTunnel(
  deps: ConnectDeps,
  socket: net.Socket,
  client: string,
  host: string,
  port: number,
  head: Buffer,
  how: TunnelMode,
): Promise<void> {
  const { audit, limits } = deps;
  // What the client sent before the tunnel's first byte (its CONNECT head): not the tunnel's.
  const readBefore = socket.bytesRead - head.length;
  /** What the gateway wrote before the tunnel's first byte (the 200): not the tunnel's. */
  let wroteBefore = 0;
  const transparent = how.mode === 'transparent';
  const mode = transparent ? ({ mode: 'transparent' } as const) : {};
  const t = { host, port };
  const a = await admit(deps, 'tunnel', how.via, client, t.host, t.port);
  if (!a.ok) {
    audit.write({
      event: 'connect',
      client,
      host: a.decision.host ?? t.host.slice(0, 255),
      port: t.port,
      rule: a.decision.rule,
      decision: 'deny',
      reason: a.reason,
      status: a.status,
      detail: a.detail,
      ...mode,
    });
    return transparent ? void socket.destroy() : rawReply(socket, a.status, a.reason, a.detail);
  }
  const { decision, ip, conn } = a;
  const name = decision.host;
  const base = { event: 'connect', client, host: name, port: t.port, ip, rule: decision.rule, ...mode } as const;
  /** The line of an admitted tunnel whose client left before it was answered (dialled or not). */
  const leftEarly = () =>
    audit.write({ ...base, decision: 'allow', reason: 'allowed', detail: 'the client closed before the tunnel was answered' });
  if (socket.destroyed) {
    // Admitted for a client that left meanwhile: nothing is dialled, the decision is still audited.
    a.done();
    return leftEarly();
  }
  const carries = transparent && how.via === 'http' && decision.carries === 'tls' ? 'named' : decision.carries;
  if (deps.intercept?.(socket, head, { conn, client, host: name, port: t.port, ip, rule: decision.rule, ...mode }, a.done)) return;
  // noDelay: a tunnel relays what it is given at once (the client side is the HTTP server's, already noDelay).
  // Its reads go to the first-bytes check, then straight to the client (relay.ts: larger reads).
  const reads = new UpstreamReads();
  const upstream = net.connect({ host: ip, port: t.port, allowHalfOpen: true, noDelay: true, onread: reads.onread });
  dropListenersOnClose(upstream);
  upstream.setTimeout(limits.connectTimeoutMs, () => upstream.destroy(new Error(`connect timeout after ${limits.connectTimeoutMs} ms`)));
  const started = Date.now();
  /** Why the gateway closed the tunnel (the first reason wins); a side's FIN alone does not close it (`endedBy`). */
  let closedBy: ClosedBy | undefined;
  /** The side whose FIN came first: who ended a tunnel the gateway did not close. */
  let endedBy: 'client' | 'upstream' | undefined;
  let open = false;
  /** Answered (or refused): a client that leaves before then still gets its dial audited. */
  let answered = false;
  let httpMode = false;
  let inspecting = false;
  /** The first-bytes check still needs bytes from the client (none yet, or an unfinished message). */
  let clientOwes = true;
  /** The first-bytes check's deadline while it runs. */
  let helloTimer: NodeJS.Timeout | undefined;
  const finish = (by: ClosedBy) => {
    closedBy ??= by;
    socket.destroy();
    upstream.destroy();
  };
  const refuse = (status: number, reason: RequestAudit['reason'], detail?: string, decisionKind: 'deny' | 'error' = 'deny') => {
    answered = true;
    audit.write({ ...base, decision: decisionKind, reason, status, detail });
    // Refused: no longer a connection to the host (a reload while the refusal lingers refuses nothing again).
    conn.onClose = undefined;
    a.done();
    upstream.destroy();
    if (transparent) socket.destroy();
    else rawReply(socket, status, reason, detail);
  };
  conn.onClose = (why) => {
    if (open) return finish(why);
    const r = revokedRefusal(conn);
    refuse(r.status, r.reason, r.detail);
  };
  upstream.on('error', (err) => {
    if (!open) refuse(502, 'upstream-connect-failed', err.message, 'error');
    else if (!httpMode) finish('error');
  });
  socket.on('error', () => finish('error'));
  upstream.on('connect', () => {
    upstream.setTimeout(0);
    if (socket.destroyed) return void upstream.destroy(); // audited by the client's 'close'
    // The decision was made before the lookup and the connect: it must still hold now.
    if (!stillAllowed(conn, deps.allowlist)) {
      const r = revokedRefusal(conn);
      return refuse(r.status, r.reason, r.detail);
    }
    open = answered = true;
    // The answer first: the client's next bytes are on their way while the audit line is made.
    if (!transparent) socket.write(ESTABLISHED);
    wroteBefore = socket.bytesWritten;
    audit.write({ ...base, decision: 'allow', reason: 'allowed', status: 200 });
    socket.setTimeout(limits.idleTimeoutMs, () => finish('idle-timeout'));
    inspect();
  });
  upstream.on('end', () => (endedBy ??= 'upstream'));
  /**
   * The client stopped sending before the check had what it needs: nothing more can come, so the tunnel
   * can never open (it would hold a connection slot until the hello timeout). Not on a `/tcp` rule: there
   * the server may speak first to a client that only reads.
   */
  const clientGaveUp = () => inspecting && clientOwes && carries !== 'any';
  socket.on('end', () => {
    endedBy ??= 'client';
    if (clientGaveUp()) finish('client');
  });
  socket.on('close', () => {
    clearTimeout(helloTimer);
    upstream.destroy();
    a.done();
    // Dialled for a client that left before the answer: the dial is audited, with what happened.
    if (!answered) return leftEarly();
    if (!open) return;
    audit.write({
      event: 'tunnel_close',
      client,
      host: name,
      port: t.port,
      ip,
      bytes_up: httpMode ? socket.bytesRead - readBefore : upstream.bytesWritten,
      bytes_down: httpMode ? socket.bytesWritten - wroteBefore : upstream.bytesRead,
      ms: Date.now() - started,
      closed_by: closedBy ?? endedBy ?? 'client',
      ...mode,
    });
  });
  upstream.on('close', () => {
    if (!open && !socket.destroyed && !socket.writableEnded) socket.destroy();
    if (inspecting) finish(endedBy ?? 'upstream');
  });

  function inspect(): void {
    const check = new FirstBytes(name, carries);
    // The whole check (first bytes, and for TLS the handshake up to the server's hello) has this long.
    helloTimer = setTimeout(() => act(check.timeout()), limits.helloTimeoutMs);
    const onClient = (chunk: Buffer) => {
      const v = check.client(chunk);
      clientOwes = v.kind === 'need-more';
      act(v);
    };
    const onServer = (chunk: Buffer) => {
      // The origin waits for a client that does not read (as the pipe does later).
      if (!socket.write(chunk)) {
        upstream.pause();
        socket.once('drain', () => upstream.resume());
      }
      act(check.fromServer(chunk));
    };
    inspecting = true;
    const stop = () => {
      inspecting = false;
      clearTimeout(helloTimer);
      socket.removeListener('data', onClient);
    };
    function act(v: Verdict): void {
      if (socket.destroyed) return;
      switch (v.kind) {
        case 'need-more':
          return;
        case 'forward':
          upstream.write(v.bytes);
          return;
        case 'pass':
          stop();
          if (v.bytes.length) upstream.write(v.bytes);
          reads.relayTo(upstream, socket);
          relay(socket, upstream);
          return;
        case 'http':
          stop();
          httpMode = true;
          upstream.destroy();
          // A refusal in it closes the tunnel (reply.ts): the gateway's reason.
          whenRefused(socket, () => (closedBy ??= 'request-refused'));
          socket.setTimeout(0);
          deps.toHttp(socket, v.bytes, { conn, client, host: name, port: base.port, ip, rule: decision.rule, ...mode });
          return;
        case 'reject':
          stop();
          audit.write({ ...base, decision: 'deny', reason: v.reason, detail: v.detail });
          finish(v.reason);
          return;
      }
    }
    socket.on('data', onClient);
    reads.inspectWith(onServer);
    if (head.length) onClient(head);
    // The client's FIN may have come before the check started.
    if (socket.readableEnded && clientGaveUp()) finish('client');
  }
}
