// What the proxy's two node:http servers share (the proxy port's, for the connections the front door
// hands over, and the one that parses requests inside plain-HTTP tunnels, in-tunnel.ts): their options,
// the scope each connection is handled in, the hand-over of a socket with bytes read already, handlers
// whose exceptions close their connection only, and the audited refusals Node would otherwise send itself.
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyLimits } from '../config.js';
import { withConnectionScope } from '../lastresort.js';
import type { Report } from '../report.js';
import type { HttpTunnel } from './connect.js';
import { inFlight, type RequestAudit } from './forward.js';
import {
  closing,
  closingOn,
  drop,
  held,
  inTurn,
  newest,
  PIPELINE_MAX,
  refusedHere,
  refusedOn,
  SKIPPED_DETAIL,
  timeHead,
  unanswered,
  whenAnswered,
} from './pipeline.js';
import { wantsClose } from './framing.js';
import { LINGER_BYTES, lingerAfterAnswers, lingerClose, rawReply, refuseResponse } from './reply.js';
import { parseAbsoluteUrl, parseAuthority } from './target.js';
import { quoted } from '../quoted.js';

/** A node:http server that never listens itself: the proxy gives it its connections. */
export function handedServer(limits: ProxyLimits): http.Server {
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: 5_000,
    // How often the headers timeout is enforced (Node's default, 30 s, would let a slow client linger).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    // A request without Host goes to the proxy's own checks (an audited 400), not Node's silent 400.
    requireHostHeader: false,
  });
  // Let the parser hand over every header. By default Node passes only the first 1000 to the request
  // (rawHeaders included) while it still frames the body by all of them, so a Transfer-Encoding or
  // Content-Length after 1000 filler headers would frame the body without the framing checks (or the
  // forwarded request) ever seeing it: a smuggled second request. maxHeaderBytes bounds the cost.
  server.maxHeadersCount = 0;
  server.timeout = limits.idleTimeoutMs;
  // 'listening' starts its enforcement of the headers timeout (slowloris), which Node only starts on
  // listen; close() stops it.
  server.emit('listening');
  return server;
}

/** Report an internal error of one connection and close it; the gateway keeps serving the others. */
function internalError(report: Report, err: unknown, socket: Duplex | undefined): void {
  report(`proxy: internal error, connection closed: ${(err as Error)?.stack ?? String(err)}`);
  socket?.destroy();
}

/** A handler whose exceptions (thrown, or its promise rejected) close its connection only. */
export function guarded<A extends unknown[]>(
  report: Report,
  socketOf: (a: A) => Duplex | undefined,
  fn: (...a: A) => unknown,
): (...a: A) => void {
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
export function scopeConnections(server: http.Server): void {
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
export function handToHttp(server: http.Server, socket: net.Socket, read: Buffer): void {
  // A connection held for its waiting requests is never handed on (pipeline.ts: a CONNECT or upgrade
  // behind them closes it first); should one be, it is closed, not read.
  if (held(socket)) return void socket.destroy();
  // The server's parser reads through the socket stream, not from its handle: a TLS socket's handle
  // hands it every record of a read in a row, past the pause of a held connection (ATTACK12); the
  // stream keeps what it read while paused.
  const handle = (socket as { _handle?: { _consumed?: boolean } | null })._handle;
  if (handle) handle._consumed = true;
  // Paused while the server takes it: its listener would otherwise schedule a resume that starts reading
  // again after the requests in `read` have held the connection.
  socket.pause();
  server.emit('connection', socket);
  if (read.length) socket.emit('data', read);
  if (socket.readableEnded) socket.emit('end');
  if (!held(socket)) socket.resume();
}

/**
 * Nothing more is read from `socket` as requests: once every answer on it is over it closes, lingering,
 * whether or not node:http closes it itself (it does not when a chunked request's trailer asked for the
 * close, nor once it let go of the socket for an upgrade).
 */
function closeOnceAnswered(socket: Duplex): void {
  lingerAfterAnswers(socket);
  whenAnswered(socket, () => lingerClose(socket));
}

/** Bytes the parser dropped on a connection after a request that closes it (`dropAfterClose`). */
const droppedAfterClose = new WeakMap<Duplex, number>();

/** What a request on the proxy port asked for (its line's host and port), when that can be read. */
function targetOf(req: http.IncomingMessage): { host: string; port: number } | undefined {
  const t = req.method === 'CONNECT' ? parseAuthority(req.url ?? '') : parseAbsoluteUrl(req.url ?? '');
  return t.ok ? { host: t.host.slice(0, 255), port: t.port } : undefined;
}

/**
 * The refusals a server answers before any request is admitted (a head the parser refused or that came
 * too slowly, an expectation, a CONNECT inside a tunnel), each with its audit line: inside a plain-HTTP
 * tunnel (`tunnelOf`) it names the tunnel's host. Every refusal is audited (ATTACK6).
 */
export function refusals(log: (e: RequestAudit) => void, tunnelOf: (socket: Duplex) => HttpTunnel | undefined, headersTimeoutMs: number) {
  /** `status` undefined: nothing could be written (an answer was under way), the connection is closed. */
  const auditRefusal = (socket: Duplex, status: number | undefined, detail: string, req?: http.IncomingMessage) => {
    const tunnel = tunnelOf(socket);
    // On the proxy port, a request refused before its checks is named by what it asked for.
    const asked = tunnel || !req ? undefined : targetOf(req);
    log({
      event: 'http',
      client: tunnel?.client ?? (socket as net.Socket).remoteAddress ?? '',
      host: tunnel?.host ?? asked?.host ?? '',
      port: tunnel?.port ?? asked?.port ?? 0,
      ...(tunnel ? { ip: tunnel.ip, rule: tunnel.rule, ...(tunnel.mode ? { mode: tunnel.mode } : {}) } : {}),
      ...(req?.method ? { method: req.method } : {}),
      decision: 'deny',
      reason: 'bad-request',
      ...(status === undefined ? {} : { status }),
      detail,
    });
  };
  /** A head or body the parser refused (400, 431), or a head that did not come in time (408). */
  const clientError = (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (socket.writableEnded || socket.destroyed) return;
    // Bytes after a request that closes its connection (`Connection: close`, HTTP/1.0): not requests
    // (RFC 9112 9.6), dropped as the fast path drops them (plain.ts). The requests before them are
    // answered in turn, then the connection closes, lingering (Node would close it at once: whatever
    // the client still sends would reset it, and the answer with it).
    if (err.code === 'HPE_CLOSED_CONNECTION') return dropAfterClose(socket, err);
    // A head the gateway itself stopped reading (the connection is held for its waiting requests,
    // pipeline.ts) is not late (ATTACK13): it is timed again from the end of the hold.
    if (status === 408 && held(socket)) return timeHead(socket, headersTimeoutMs, () => clientError(err, socket));
    const detail = String(err.code ?? err.message);
    // The newest request, its body still being read: the refusal is that request's (its line says so),
    // forwarded already or still waiting its turn (pipeline.ts). Otherwise the parser refused the next
    // head: a line of its own.
    const req = newest(socket);
    const bodyOf = req && !req.complete ? req : undefined;
    const current = inFlight.get(socket);
    const forwarded = bodyOf && current?.req === bodyOf ? current : undefined;
    // An answer under way or queued on the connection: nothing can be written into it, only a close.
    const answering = unanswered(socket) > (bodyOf ? 1 : 0) || !!forwarded?.res.headersSent;
    if (forwarded) forwarded.refuseBody(status, detail, !answering);
    else if (bodyOf) {
      drop(bodyOf);
      auditRefusal(socket, answering ? undefined : status, `the request body: ${detail}`, bodyOf);
    } else auditRefusal(socket, answering ? undefined : status, detail);
    if (!answering) return rawReply(socket, status, 'bad-request', err.code);
    cutAll(socket, `the parser refused what the client sent next (${detail})`);
  };
  /**
   * The parser read bytes after a request that closes the connection: dropped, and the connection closes
   * once its answers are over (`closeOnceAnswered`). Past LINGER_BYTES dropped (a client streaming while
   * its answer is slow) it is cut, as a lingering close is.
   */
  function dropAfterClose(socket: Duplex, err: NodeJS.ErrnoException & { rawPacket?: Buffer }): void {
    const before = droppedAfterClose.get(socket);
    const total = (before ?? 0) + (err.rawPacket?.length ?? 0);
    droppedAfterClose.set(socket, total);
    if (total > LINGER_BYTES) return cutAll(socket, `more than ${LINGER_BYTES} bytes were sent after a request that closes the connection`);
    if (before === undefined) closeOnceAnswered(socket);
  }
  /** `Expect` other than 100-continue (Node would answer 417 itself, unaudited). */
  const expectation = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const detail = 'only Expect: 100-continue is understood';
    auditRefusal(req.socket, 417, detail, req);
    refuseResponse(res, 417, 'bad-request', detail);
  };
  /** Close a connection under the request forwarded on it (its line says `why`): a refusal of its own. */
  function cutAll(socket: Duplex, why: string): void {
    inFlight.get(socket)?.cut(why);
    refusedHere(socket);
    socket.destroy();
  }
  /**
   * Handle a request in its connection's order (pipeline.ts): `handle` runs unless the request comes
   * after a refusal or is one too many (each then has its line, without a status: nothing is written
   * for it).
   */
  const inOrder = (req: http.IncomingMessage, res: http.ServerResponse, handle: () => unknown): Promise<void> => {
    // The client's close as every path reads it (framing.ts): node:http's parser misses some spellings
    // (`close` with a tab after it; with `keep-alive` beside it in HTTP/1.0). Its answer then closes the
    // connection, and nothing after it is handled (pipeline.ts).
    if (res.shouldKeepAlive && wantsClose(req.rawHeaders)) res.shouldKeepAlive = false;
    if (!res.shouldKeepAlive) closing(req);
    return inTurn(
      req,
      res,
      handle,
      (why) => auditRefusal(req.socket, undefined, SKIPPED_DETAIL[why], req),
      () => cutAll(req.socket, `more than ${PIPELINE_MAX} requests were pipelined without waiting for answers`),
    );
  };
  /**
   * An upgrade or a CONNECT parsed while answers to earlier requests of its connection are not over, or
   * after a refusal: Node hands the raw socket over, and a 101 or 200 would be written into the answers
   * still to come (or after the refusal that closes the connection). Refused by closing the connection
   * (its line says so), before anything is dialled; true when it was.
   */
  const outOfTurn = (req: http.IncomingMessage, socket: Duplex): boolean => {
    // After a request that closes the connection (in a spelling node:http's parser missed, or it would
    // not have read this one): not a request, dropped as what follows a close is (ATTACK17). The answers
    // before it are written, then the connection closes, lingering.
    if (closingOn(socket)) {
      socket.pause();
      // node:http let go of the socket for the upgrade: the answers still to be written on it wait for
      // 'drain' events the server no longer passes on, and its error handler is gone (ATTACK19).
      const served = socket as Duplex & { _httpMessage?: http.ServerResponse | null };
      socket.on('drain', () => {
        const res = served._httpMessage;
        if (res && !res.writableFinished) res.emit('drain');
      });
      socket.on('error', () => socket.destroy());
      closeOnceAnswered(socket);
      return true;
    }
    if (!unanswered(socket) && !refusedOn(socket)) return false;
    const what = `${req.method === 'CONNECT' ? 'a CONNECT' : 'an upgrade'} to ${quoted(req.url)}`;
    auditRefusal(
      socket,
      undefined,
      `${what} pipelined behind requests whose answers were not over (or a refusal): the connection was closed`,
      req,
    );
    cutAll(socket, `${what} was pipelined behind this request`);
    return true;
  };
  return { auditRefusal, clientError, expectation, inOrder, outOfTurn };
}
