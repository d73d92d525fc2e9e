// Forwarding a checked plain-HTTP request or WebSocket upgrade to the address it was admitted for, on
// node:http with explicit framing (proxy/http/framing.ts), and checking the origin's answer before any
// of it reaches the client. Replaces http-proxy (README: the forwarder).
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Allowlist } from '../policy/allowlist.js';
import type { Audit, AuditEvent } from '../audit.js';
import { ERROR_STATUS, type ClosedBy, type RevokeReason } from '../reasons.js';
import { revokedRefusal } from './admit.js';
import { checkResponseHead } from './framing.js';
import { stillAllowed, type Connection } from './registry.js';
import { LINGER_BYTES, lingerClose, rawReply, refuseResponse } from './reply.js';

export type RequestAudit = Extract<AuditEvent, { event: 'connect' | 'http' }>;
/** How a forwarded request ended: what its audit line says besides the request's own fields. */
type Outcome = Pick<RequestAudit, 'decision' | 'reason' | 'detail'>;
type FailReason = 'upstream-error' | RevokeReason;

export interface ForwardDeps {
  allowlist: () => Allowlist;
  audit: Audit;
  /** Keep-alive pool for plain HTTP; a connection goes back to it only after a clean, complete exchange. */
  agent: http.Agent;
  /** The same for the TLS connections of credential injection (proxy/inject). */
  tlsAgent?: https.Agent;
  idleTimeoutMs: number;
}

/** The listener that closes an idle pooled origin connection on its first byte (see `ownedPool`). */
const IDLE_GUARD = Symbol('codex-egress idle guard');
type Guarded = net.Socket & { [IDLE_GUARD]?: () => void };
/** What a forwarded request adds to its options: whose pool its origin connection is in. */
type PoolOptions = http.ClientRequestArgs & { owner?: net.Socket; hostName?: string };

/**
 * Make `agent`'s keep-alive pool behave like the plain-HTTP path's kept connections (plain.ts): an
 * origin connection serves one client connection and one host name (the pool is keyed by both, besides
 * the address), closes with its client connection, and is closed when it sends anything while it waits
 * in the pool. Otherwise bytes an origin sent unasked (or late) would be read as the answer to the next
 * request the connection carries: another client's, or another host's at the same address.
 */
export function ownedPool<A extends http.Agent>(agent: A): A {
  const keys = new WeakMap<net.Socket, string>();
  let seq = 0;
  const keyOf = (owner: net.Socket): string => {
    let k = keys.get(owner);
    if (k === undefined) {
      k = `#${++seq}`;
      keys.set(owner, k);
      const mine = `|${k}`;
      owner.once('close', () => {
        for (const [name, free] of Object.entries(agent.freeSockets))
          if (name.endsWith(mine)) for (const s of [...(free ?? [])]) s.destroy();
      });
    }
    return k;
  };
  const name = agent.getName.bind(agent);
  agent.getName = (o: PoolOptions = {}) => `${name(o)}|${o.hostName ?? ''}|${o.owner ? keyOf(o.owner) : ''}`;
  // After the agent's own 'free' listener (from its constructor): the socket is then in the pool, or
  // already carrying the next request.
  agent.on('free', (socket: Guarded, o: PoolOptions) => {
    if (!agent.freeSockets[agent.getName(o)]?.includes(socket)) return;
    if (o.owner?.destroyed) return void socket.destroy();
    const guard = () => socket.destroy();
    socket[IDLE_GUARD] = guard;
    socket.once('data', guard);
  });
  const reuse = agent.reuseSocket.bind(agent);
  agent.reuseSocket = (socket: Guarded, req: http.ClientRequest) => {
    const guard = socket[IDLE_GUARD];
    if (guard) socket.removeListener('data', guard);
    socket[IDLE_GUARD] = undefined;
    reuse(socket, req);
  };
  return agent;
}

/** A request that passed every check, and where it goes. */
export interface Forward {
  conn: Connection;
  /** Remove the connection from the registry (once, when it is over). */
  done: () => void;
  ip: string;
  port: number;
  method: string;
  path: string;
  headers: string[];
  /** The audit line's fields so far (event, client, host, port, ip, method, rule). */
  audit: Omit<RequestAudit, 'decision' | 'reason'>;
  /** Credential injection: the request goes out over TLS, verified against this name (and trust). */
  tls?: { servername: string; ca?: string[] };
}

/** The request forwarded on a client connection whose answer is not over (see `inFlight`). */
export interface InFlight {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  /** http.Server's parser refused the rest of this request's body; `answered`: a 400 is written for it. */
  refuseBody(status: number, detail: string, answered: boolean): void;
  /** The connection is closed under this request, for `why` (what came after it); after a refusal of its body, nothing. */
  cut(why: string): void;
}

/**
 * The request forwarded on each client connection whose answer is not over: one at most, as a
 * connection's requests are forwarded one at a time (pipeline.ts). http-server.ts `refusals` reads it
 * when the parser refuses bytes: that request's body if it is still being read (its own line then says
 * so), else what came after it (the request is cut with the connection).
 */
export const inFlight = new WeakMap<Duplex, InFlight>();

/** The upstream request: plain HTTP, or verified TLS for an intercepted tunnel; `owner`: the client connection (ownedPool). */
function upstreamRequest(f: Forward, agent: http.Agent | false | undefined, owner?: net.Socket): http.ClientRequest {
  const pool = { owner, hostName: f.audit.host };
  const o = { host: f.ip, port: f.port, method: f.method, path: f.path, headers: f.headers, agent, ...pool };
  return f.tls ? https.request({ ...o, servername: f.tls.servername, ca: f.tls.ca, rejectUnauthorized: true }) : http.request(o);
}

/** Plain HTTP: stream the request body to the origin, its checked answer back. */
export function forwardRequest(deps: ForwardDeps, req: http.IncomingMessage, res: http.ServerResponse, f: Forward): void {
  let outcome: Outcome = { decision: 'allow', reason: 'allowed' };
  let logged = false;
  /** The status of the gateway's own refusal of the request's body (`inFlight`), when it wrote one. */
  let refusedWith: number | undefined;
  let bodyBad = false;
  const client = req.socket;
  /** The answer's turn on the connection came (an answer queued behind others is written nowhere yet). */
  let attached = res.socket !== null;
  if (!attached) res.once('socket', () => (attached = true));
  const finish = () => {
    if (logged) return;
    logged = true;
    client.removeListener('close', onClientClose);
    if (inFlight.get(client) === entry) inFlight.delete(client);
    f.done();
    // No answer reached the connection (the client closed first, or the connection closed before this
    // answer's turn): no status, which would be Node's default 200 or one the client never got.
    const sent = res.headersSent && attached;
    if (!sent)
      outcome = {
        ...outcome,
        detail:
          outcome.detail ??
          (res.headersSent
            ? "the connection closed before this answer's turn: it was not sent"
            : 'the client closed before the upstream answered'),
      };
    const status = refusedWith ?? (sent ? res.statusCode : undefined);
    deps.audit.write({ ...f.audit, ...outcome, ...(status === undefined ? {} : { status }) });
  };
  const entry: InFlight = {
    req,
    res,
    refuseBody: (status, detail, answered) => {
      if (logged) return;
      bodyBad = true;
      outcome = { decision: 'deny', reason: 'bad-request', detail: `the request body: ${detail}` };
      if (answered) refusedWith = status;
      up.destroy();
    },
    cut: (why) => {
      if (logged || bodyBad) return;
      bodyBad = true;
      outcome = { ...outcome, detail: `the connection was closed: ${why}` };
      up.destroy();
    },
  };
  inFlight.set(client, entry);
  // A response queued behind another never emits 'close' when the client goes: its end is the client's.
  const onClientClose = () => {
    up.destroy();
    finish();
  };
  client.once('close', onClientClose);
  const up = upstreamRequest(f, f.tls ? deps.tlsAgent : deps.agent, client);
  // Anything unusual destroys the upstream socket, so it never goes back to the pool.
  const fail = (status: number, reason: FailReason, detail: string) => {
    if (logged || bodyBad) return;
    outcome = { decision: reason === 'upstream-error' ? 'error' : 'deny', reason, detail };
    up.destroy();
    // The connection closes after this answer: nothing after it is forwarded (pipeline.ts).
    if (!res.headersSent) refuseResponse(res, status, reason, detail);
    else res.destroy();
  };
  const revoked = () => {
    const r = revokedRefusal(f.conn);
    fail(r.status, r.reason as RevokeReason, r.detail ?? '');
  };
  f.conn.onClose = revoked;
  res.once('close', () => {
    if (!res.writableFinished) up.destroy();
    finish();
  });
  up.setTimeout(deps.idleTimeoutMs, () => {
    const ms = deps.idleTimeoutMs;
    if (!res.headersSent) return fail(504, 'upstream-error', `no answer from the upstream for ${ms} ms`);
    // The origin is waiting for a client that reads nothing: the client's doing, not the origin's (as on
    // the fast path, plain.ts; ATTACK20).
    if (client.writableNeedDrain || res.writableNeedDrain) {
      if (logged || bodyBad) return;
      outcome = { decision: 'allow', reason: 'allowed', detail: `the client read nothing of the answer for ${ms} ms` };
      up.destroy();
      return void res.destroy();
    }
    fail(502, 'upstream-error', `no data from the upstream for ${ms} ms`);
  });
  up.on('error', (err) => fail(502, 'upstream-error', err.message));
  up.on('upgrade', (_r, socket: Duplex) => {
    socket.destroy();
    fail(502, 'upstream-error', 'the upstream switched protocols unasked');
  });
  up.on('response', (ures) => {
    if (!stillAllowed(f.conn, deps.allowlist)) return revoked();
    const status = ures.statusCode;
    const h = checkResponseHead(status, ures.statusMessage, ures.rawHeaders, false);
    if (!h.ok || status === undefined) return fail(ERROR_STATUS.failed, 'upstream-error', h.ok ? 'no upstream status' : h.detail);
    try {
      res.writeHead(status, ures.statusMessage, h.headers);
    } catch (err) {
      return fail(502, 'upstream-error', `unusable upstream answer: ${(err as Error).message}`);
    }
    ures.on('aborted', () => fail(502, 'upstream-error', 'the upstream closed in the middle of its answer'));
    ures.on('error', () => fail(502, 'upstream-error', 'the upstream answer failed'));
    ures.on('end', () => {
      // The origin answered before it read the whole request body: that connection is not reused.
      if (!req.complete) up.destroy();
    });
    ures.pipe(res);
  });
  req.on('aborted', () => up.destroy());
  req.on('error', () => up.destroy());
  req.pipe(up);
}

/** What a client may send after its upgrade request before the 101 (kept for the origin). */
const MAX_EARLY_BYTES = 64 * 1024;

/** A WebSocket upgrade: the origin's 101 (checked) makes it a two-way stream, audited like a tunnel. */
export function forwardUpgrade(deps: ForwardDeps, socket: net.Socket, head: Buffer, f: Forward): void {
  const started = Date.now();
  let upSocket: Duplex | undefined;
  /** Why the gateway closed the WebSocket (the first reason wins); a side's FIN alone does not (`endedBy`). */
  let closedBy: ClosedBy | undefined;
  /** The side whose FIN (or close) came first: who ended a WebSocket the gateway did not close. */
  let endedBy: 'client' | 'upstream' | undefined;
  let open = false;
  /** The line is written (at the 101, or once a refused upgrade's answer is over or cut). */
  let answered = false;
  /** The status of the origin's refusal (not 101) whose head was passed on: its line waits for its end. */
  let refusedWith: number | undefined;
  const log = (e: Outcome & Pick<RequestAudit, 'status'>) => {
    if (answered) return;
    answered = true;
    deps.audit.write({ ...f.audit, ...e });
  };
  const up = upstreamRequest(f, false);
  const fail = (status: number, reason: FailReason, detail: string) => {
    up.destroy();
    upSocket?.destroy();
    const outcome = { decision: reason === 'upstream-error' ? 'error' : 'deny', reason, detail } as const;
    if (answered) return void socket.destroy();
    // The origin's answer is under way: it is cut, and its line says why (with the status sent).
    if (refusedWith !== undefined) {
      log({ ...outcome, status: refusedWith });
      return void socket.destroy();
    }
    // Nothing can be written to a client that is gone (reset): it left, whatever the upstream did next.
    if (socket.destroyed) return clientLeft();
    log({ ...outcome, status });
    rawReply(socket, status, reason, detail);
  };
  const end = (by?: ClosedBy) => {
    if (by) closedBy ??= by;
    socket.destroy();
    upSocket?.destroy();
  };
  /** A client that stops sending before the 101 has left: a WebSocket needs both ways. */
  const clientLeft = () => {
    // A refusal's answer under way goes on to a client that stopped sending (its line comes at its end).
    if (open || answered || refusedWith !== undefined) return;
    up.destroy();
    upSocket?.destroy();
    log({ decision: 'allow', reason: 'allowed', detail: 'the client closed before the upstream answered' });
    socket.destroy();
  };
  const revoked = () => {
    const r = revokedRefusal(f.conn);
    fail(r.status, r.reason as RevokeReason, r.detail ?? '');
  };
  f.conn.onClose = (why) => (open ? end(why) : revoked());
  socket.on('error', () => end('error'));
  // What the client sends before the 101 is kept for the origin (bounded: a WebSocket client waits for
  // the 101); while a refusal's answer is under way it is dropped, bounded too. It was read and dropped
  // without bound for as long as the origin took (ATTACK17).
  const early: Buffer[] = [];
  let earlyBytes = 0;
  const onEarly = (chunk: Buffer) => {
    earlyBytes += chunk.length;
    if (refusedWith !== undefined) {
      if (earlyBytes <= LINGER_BYTES) return;
      log({
        decision: 'allow',
        reason: 'allowed',
        status: refusedWith,
        detail: `the client sent more than ${LINGER_BYTES} bytes during the answer: cut`,
      });
      return void socket.destroy();
    }
    if (earlyBytes <= MAX_EARLY_BYTES) return void early.push(chunk);
    // Refused here: the upstream request's end is no failure of its own (its 'error' would cut the
    // lingering close, and the 400 with it).
    up.removeAllListeners('error');
    up.on('error', () => undefined);
    up.destroy();
    const detail = `more than ${MAX_EARLY_BYTES} bytes sent before the upgrade was answered`;
    if (!answered) log({ decision: 'deny', reason: 'bad-request', status: 400, detail });
    rawReply(socket, 400, 'bad-request', detail);
  };
  socket.on('data', onEarly);
  socket.once('close', () => {
    // Before its answer was over: the client left (an answer under way keeps its status).
    if (refusedWith !== undefined) log({ decision: 'allow', reason: 'allowed', status: refusedWith });
    else clientLeft();
    up.destroy();
    upSocket?.destroy();
    f.done();
    if (open) {
      deps.audit.write({
        event: 'tunnel_close',
        client: f.audit.client,
        host: f.audit.host,
        port: f.port,
        ip: f.ip,
        bytes_up: upSocket ? ((upSocket as net.Socket).bytesWritten ?? 0) : 0,
        bytes_down: upSocket ? ((upSocket as net.Socket).bytesRead ?? 0) : 0,
        ms: Date.now() - started,
        closed_by: closedBy ?? endedBy ?? 'client',
      });
    }
  });
  socket.on('end', () => {
    endedBy ??= 'client';
    clientLeft();
  });
  up.setTimeout(deps.idleTimeoutMs, () => fail(504, 'upstream-error', 'no answer from the upstream'));
  up.on('error', (err) => fail(502, 'upstream-error', err.message));
  up.on('upgrade', (ures, usock: net.Socket, uhead: Buffer) => {
    upSocket = usock;
    if (!stillAllowed(f.conn, deps.allowlist)) return revoked();
    const h = checkResponseHead(ures.statusCode, ures.statusMessage, ures.rawHeaders, true);
    if (!h.ok) return fail(502, 'upstream-error', h.detail);
    if (String(ures.headers.upgrade ?? '').toLowerCase() !== 'websocket')
      return fail(502, 'upstream-error', 'the upstream upgraded to something other than WebSocket');
    if (socket.destroyed) return usock.destroy();
    up.setTimeout(0);
    open = true;
    log({ decision: 'allow', reason: 'allowed', status: 101 });
    let headText = `HTTP/1.1 101 ${ures.statusMessage || 'Switching Protocols'}\r\n`;
    for (let i = 0; i < h.headers.length; i += 2) headText += `${h.headers[i]}: ${h.headers[i + 1]}\r\n`;
    socket.write(`${headText}\r\n`);
    if (uhead.length) socket.write(uhead);
    socket.removeListener('data', onEarly);
    if (head.length) usock.write(head);
    for (const chunk of early) usock.write(chunk);
    usock.on('error', () => end('error'));
    usock.on('end', () => (endedBy ??= 'upstream'));
    usock.on('close', () => {
      endedBy ??= 'upstream';
      end();
    });
    // Idle in both directions closes the stream; traffic either way keeps it open.
    const idle = () => end('idle-timeout');
    socket.setTimeout(deps.idleTimeoutMs, idle);
    usock.setTimeout(0);
    usock.on('data', () => socket.setTimeout(deps.idleTimeoutMs, idle));
    usock.pipe(socket);
    socket.pipe(usock);
  });
  // The origin refused the upgrade: pass its (checked) answer on and close.
  up.on('response', (ures) => {
    if (!stillAllowed(f.conn, deps.allowlist)) return revoked();
    const h = checkResponseHead(ures.statusCode, ures.statusMessage, ures.rawHeaders, false);
    if (!h.ok || ures.statusCode === undefined) return fail(502, 'upstream-error', h.ok ? 'no upstream status' : h.detail);
    if (socket.destroyed) return;
    refusedWith = ures.statusCode;
    let headText = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage ?? ''}\r\n`;
    for (let i = 0; i < h.headers.length; i += 2) headText += `${h.headers[i]}: ${h.headers[i + 1]}\r\n`;
    socket.write(`${headText}connection: close\r\n\r\n`);
    // Piped, not written chunk by chunk: a client that does not read must stop the origin, not make
    // the gateway hold the whole answer in memory.
    ures.pipe(socket, { end: false });
    ures.on('end', () => {
      log({ decision: 'allow', reason: 'allowed', status: refusedWith });
      lingerClose(socket);
    });
    ures.on('error', () => fail(502, 'upstream-error', 'the upstream answer failed'));
    ures.on('aborted', () => fail(502, 'upstream-error', 'the upstream closed in the middle of its answer'));
  });
  up.end();
  if (socket.readableEnded) clientLeft();
}
