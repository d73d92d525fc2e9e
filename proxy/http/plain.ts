// Plain HTTP on the proxy port without node:http: an absolute-form request whose head the front door
// read cleanly (head.ts) is admitted, written to the origin as a new head (the checked header list,
// framing as checked: a Content-Length body counted byte for byte), and the origin's answer is read
// (response-head.ts, chunked.ts) and checked before any of it reaches the client. One request at a
// time per client connection; the next head goes back to the front door, which reads it the same way
// or hands the connection to http.Server (anything this path does not take: HTTP/1.0, chunked or
// Expect requests, upgrades, a head it does not read cleanly).
//
// The origin connection belongs to the client connection: it is kept for that client's next request to
// the same host at the same address and closed with it (or when the connection leaves this path), never
// shared between clients.
import net from 'node:net';
import http from 'node:http';
import type { Allowlist } from '../policy/allowlist.js';
import type { Audit } from '../audit.js';
import type { RevokeReason } from '../reasons.js';
import { revokedRefusal } from './admit.js';
import { ChunkedBody } from './chunked.js';
import { checkResponseHead, wantsClose } from './framing.js';
import type { Forward, RequestAudit } from './forward.js';
import { headerValue, lacksHeaders, type RequestHead } from './head.js';
import { stillAllowed } from './registry.js';
import { lingerClose, rawReply } from './reply.js';
import { readResponseHead, responseFraming, type BodyFraming } from './response-head.js';

/** Requests this path leaves to http.Server: they need its handling of a body coding, 100-continue or an upgrade. */
const NOT_HERE = new Set(['transfer-encoding', 'expect', 'upgrade']);

/** Does this path take the request? HTTP/1.1, absolute-form http://, no chunked body, no Expect, no upgrade. */
export function plainEligible(h: RequestHead): boolean {
  return h.version === '1.1' && h.method !== 'CONNECT' && h.target.startsWith('http://') && lacksHeaders(h.headers, NOT_HERE);
}

/** The longest origin response head read (Node's client default, which the forwarder before this one had). */
const MAX_RESPONSE_HEAD = http.maxHeaderSize;
/** Methods whose request is sent again when a kept origin connection turns out closed (RFC 9110 9.2.2: safe). */
const RETRY = new Set(['GET', 'HEAD', 'OPTIONS']);
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');
/** Client bytes held while a request is in flight (a pipelined next request); past this, reading pauses. */
const MAX_HELD = 64 * 1024;

export interface PlainDeps {
  allowlist: () => Allowlist;
  audit: Audit;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** The checks of an absolute-form request (URL, framing, decision + lookup, Host); undefined once refused through `refuse`. */
  admit(
    h: RequestHead,
    client: string,
    refuse: (status: number, reason: string, detail?: string) => void,
  ): Promise<Omit<Forward, 'tls'> | undefined>;
  /** The exchange is over and the connection stays open: the front door reads what comes next. */
  next(socket: net.Socket, read: Buffer): void;
}

/** A client connection this path serves: the origin connection it keeps between its requests, and its idle close. */
interface PlainConn {
  kept?: { key: string; up: net.Socket };
  /** Its 'timeout' listener: the client sent nothing for the idle timeout between requests. */
  idle: () => void;
}
const conns = new WeakMap<net.Socket, PlainConn>();
/** Sockets a 'drain' listener waits on (waitForDrain). */
const draining = new WeakSet<net.Socket>();

/**
 * The connection's state here, made at its first request: its kept origin connection closes with it, and
 * between requests its idle timer (armed by `socket.setTimeout`, disarmed while a request is in flight) closes it.
 */
function adopt(socket: net.Socket): PlainConn {
  let c = conns.get(socket);
  if (c) return c;
  c = { idle: () => socket.destroy() };
  conns.set(socket, c);
  socket.once('close', () => conns.get(socket)?.kept?.up.destroy());
  socket.on('timeout', c.idle);
  return c;
}

/**
 * The connection leaves this path (its next head went to http.Server, or opened a tunnel): its kept origin
 * connection is closed and its idle timer is the new owner's to set.
 */
export function releasePlain(socket: net.Socket): void {
  const c = conns.get(socket);
  if (!c) return;
  conns.delete(socket);
  c.kept?.up.destroy();
  socket.removeListener('timeout', c.idle);
  socket.setTimeout(0);
}

/**
 * What a kept origin connection may be used again for: the same host at the same address. Not another
 * host served there: bytes an origin sends unasked, still unread when the next request goes out, would
 * be read as the answer to it.
 */
const keyOf = (f: Omit<Forward, 'tls'>) => `${f.audit.host} ${f.ip}:${f.port}`;

/** An origin connection changes hands (kept, or taken for a request): the listeners of its last use go. */
function detach(up: net.Socket): void {
  up.removeAllListeners();
  draining.delete(up);
}

/** The kept origin connection for `key`, taken (undefined if there is none usable); any other is closed. */
function takeKept(c: PlainConn, key: string): net.Socket | undefined {
  const k = c.kept;
  c.kept = undefined;
  if (!k) return undefined;
  if (k.key === key && !k.up.destroyed && !k.up.readableEnded) {
    detach(k.up);
    return k.up;
  }
  k.up.destroy();
  return undefined;
}

function keep(c: PlainConn, up: net.Socket, key: string): void {
  detach(up);
  up.setTimeout(0);
  // Idle: anything from the origin now (bytes, a FIN, an error) ends this connection.
  const drop = () => up.destroy();
  up.on('error', drop);
  up.on('data', drop);
  up.on('end', drop);
  c.kept = { key, up };
}

/** `to` has more buffered than it should: `from` stops until it drains (one wait at a time per pair). */
function waitForDrain(to: net.Socket, from: net.Socket): void {
  from.pause();
  if (draining.has(to)) return;
  draining.add(to);
  to.once('drain', () => {
    draining.delete(to);
    from.resume();
  });
}

const contentLength = (headers: readonly string[]): number => Number(headerValue(headers, 'content-length') ?? 0);

/** One request of a client connection, from its head to the end of its answer. */
export function plainExchange(d: PlainDeps, socket: net.Socket, h: RequestHead, rest: Buffer): void {
  const client = socket.remoteAddress ?? '';
  /** Client bytes read and not yet used: the rest of the body, then what follows the request. */
  let held = rest;
  const bodyLength = contentLength(h.headers);
  let bodyLeft = bodyLength;
  let up: net.Socket | undefined;
  let f: Omit<Forward, 'tls'> | undefined;
  let over = false;
  let answered = false;
  let status = 0;
  let closeClient = wantsClose(h.headers);
  /** The client left (FIN or reset) before its answer was complete. */
  let gone = false;
  const conn = adopt(socket);
  // While a request is in flight its origin side times it out (a 504, or a client that reads nothing).
  socket.setTimeout(0);

  const onData = (chunk: Buffer) => {
    if (up && bodyLeft > 0 && held.length === 0) {
      const n = Math.min(bodyLeft, chunk.length);
      bodyLeft -= n;
      if (!up.write(n === chunk.length ? chunk : chunk.subarray(0, n))) waitForDrain(up, socket);
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    held = held.length ? Buffer.concat([held, chunk]) : chunk;
    if (held.length > MAX_HELD) socket.pause();
  };
  /** The client stopped (FIN, reset): it gave up on this request, whose origin side is dropped. */
  const onGone = () => {
    if (gone || over) return;
    gone = true;
    up?.destroy();
    socket.destroy();
    // While the request is admitted, its line is written once admission is over.
    if (f) end(clientLeft());
  };
  const clientLeft = () =>
    answered
      ? ({ decision: 'allow', reason: 'allowed' } as const)
      : ({ decision: 'allow', reason: 'allowed', detail: 'the client closed before the upstream answered' } as const);

  socket.on('data', onData);
  socket.on('end', onGone);
  socket.on('close', onGone);

  /** The audit line, once; the connection leaves the registry. */
  const end = (o: Pick<RequestAudit, 'decision' | 'reason' | 'detail'>) => {
    if (over || !f) return;
    over = true;
    f.done();
    d.audit.write({ ...f.audit, ...o, ...(answered ? { status } : {}) });
  };
  /** Anything wrong after admission: a refusal if nothing was answered yet, else the client connection closes. */
  const fail = (st: number, reason: 'upstream-error' | RevokeReason, detail: string) => {
    if (over) return;
    up?.destroy();
    const o = { decision: reason === 'upstream-error' ? ('error' as const) : ('deny' as const), reason, detail };
    if (!answered) {
      answered = true;
      status = st;
      end(o);
      stopListening();
      rawReply(socket, st, reason, detail);
    } else {
      end(o);
      socket.destroy();
    }
  };
  const stopListening = () => {
    socket.removeListener('data', onData);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
  };

  void d
    .admit(h, client, (st, reason, detail) => {
      over = true;
      stopListening();
      rawReply(socket, st, reason, detail);
    })
    .then((admitted) => {
      if (!admitted) return;
      f = admitted;
      if (gone) return end(clientLeft());
      send(admitted, false);
    })
    .catch((err: unknown) => {
      // An internal error: its line, the connection leaves the registry; the last resort reports it and closes the client.
      end({ decision: 'error', reason: 'upstream-error', detail: 'internal error' });
      up?.destroy();
      throw err;
    });

  /** Write the request to the origin (a kept connection to it unless `fresh`), and read its answer. */
  function send(f: Omit<Forward, 'tls'>, fresh: boolean) {
    const revoked = () => {
      const r = revokedRefusal(f.conn);
      fail(r.status, r.reason as RevokeReason, r.detail ?? '');
    };
    f.conn.onClose = revoked;
    const reused = fresh ? undefined : takeKept(conn, keyOf(f));
    const u = reused ?? net.connect({ host: f.ip, port: f.port, noDelay: true });
    up = u;
    let text = `${f.method} ${f.path} HTTP/1.1\r\n`;
    for (let i = 0; i < f.headers.length; i += 2) text += `${f.headers[i]}: ${f.headers[i + 1]}\r\n`;
    text += '\r\n';
    const first = held.subarray(0, Math.min(bodyLeft, held.length));
    held = held.subarray(first.length);
    bodyLeft -= first.length;
    u.cork();
    u.write(text, 'latin1');
    if (first.length) u.write(first);
    u.uncork();
    if (socket.isPaused() && held.length <= MAX_HELD) socket.resume();

    let head: Buffer | undefined;
    /** Reads of the answer's head so far. */
    let headReads = 0;
    let framing: BodyFraming | undefined;
    let chunked: ChunkedBody | undefined;
    let left = 0;
    let reusable = false;
    // As a tunnel's: an address that never answers the handshake is given up on after connectTimeoutMs;
    // then nothing either way for the idle timeout ends the exchange.
    u.setTimeout(u.connecting ? d.connectTimeoutMs : d.idleTimeoutMs);
    if (u.connecting) u.once('connect', () => u.setTimeout(d.idleTimeoutMs));
    u.on('timeout', () => {
      if (u.connecting) return fail(504, 'upstream-error', `connect timeout after ${d.connectTimeoutMs} ms`);
      if (!answered) return fail(504, 'upstream-error', `no answer from the upstream for ${d.idleTimeoutMs} ms`);
      // The origin is waiting for a client that reads nothing: the client's doing, not the origin's.
      if (socket.writableNeedDrain) {
        end({ decision: 'allow', reason: 'allowed', detail: `the client read nothing of the answer for ${d.idleTimeoutMs} ms` });
        u.destroy();
        return void socket.destroy();
      }
      fail(502, 'upstream-error', `no data from the upstream for ${d.idleTimeoutMs} ms`);
    });
    /**
     * The origin connection failed. A kept one that fails before any answer (the origin closed it while
     * it was idle) is tried once more on a new connection, for a request with no body whose method is safe.
     */
    const broke = (detail: string) => {
      if (over) return;
      if (reused && !head && !framing && bodyLength === 0 && RETRY.has(f.method)) {
        u.removeAllListeners();
        u.on('error', () => undefined);
        u.destroy();
        return send(f, true);
      }
      fail(502, 'upstream-error', detail);
    };
    u.on('error', (err) => broke(err.message));
    u.on('close', () => broke(framing ? 'the upstream closed in the middle of its answer' : 'the upstream closed before answering'));
    u.on('end', () => {
      if (framing?.kind === 'close') return finish();
      broke(framing ? 'the upstream closed in the middle of its answer' : 'the upstream closed before answering');
    });
    u.on('data', (chunk: Buffer) => {
      if (over) return;
      if (framing) return body(chunk);
      head = head ? Buffer.concat([head, chunk]) : chunk;
      // The head is read from its first byte each time: only once it looks complete (its empty line is in),
      // at its 1st, 2nd, 4th, 8th… read (a malformed one is refused early), or at the size limit. An origin
      // that trickles its head a byte at a time costs n log n, not n² (review of ATTACK9).
      headReads++;
      if (
        head.indexOf(HEAD_END, Math.max(0, head.length - chunk.length - 3)) < 0 &&
        (headReads & (headReads - 1)) !== 0 &&
        head.length < MAX_RESPONSE_HEAD
      )
        return;
      for (;;) {
        const r = readResponseHead(head, MAX_RESPONSE_HEAD);
        if (r.kind === 'need-more') return;
        if (r.kind === 'bad') return fail(502, 'upstream-error', r.detail);
        const st = r.head.status;
        // An interim answer (100 Continue, 103 Early Hints) is not passed on; the final one follows.
        if (st >= 100 && st < 200 && st !== 101) {
          head = r.rest;
          continue;
        }
        if (!stillAllowed(f.conn, d.allowlist)) return revoked();
        const checked = checkResponseHead(st, r.head.reason, r.head.headers, false);
        if (!checked.ok) return fail(502, 'upstream-error', checked.detail);
        const fr = responseFraming(f.method, r.head);
        if (!fr.ok) return fail(502, 'upstream-error', fr.detail);
        framing = fr.framing;
        reusable = fr.reusable;
        // Framed by the origin's close, or answered before the whole request body was sent: the client
        // connection carries nothing more.
        if (framing.kind === 'close' || bodyLeft > 0) closeClient = true;
        let out = `HTTP/1.1 ${st} ${r.head.reason}\r\n`;
        for (let i = 0; i < checked.headers.length; i += 2) out += `${checked.headers[i]}: ${checked.headers[i + 1]}\r\n`;
        if (framing.kind === 'chunked') {
          chunked = new ChunkedBody();
          out += 'Transfer-Encoding: chunked\r\n';
        }
        if (framing.kind === 'length') left = framing.length;
        if (closeClient) out += 'Connection: close\r\n';
        out += '\r\n';
        answered = true;
        status = st;
        head = undefined;
        if (framing.kind === 'none' || (framing.kind === 'length' && left === 0)) {
          socket.write(out, 'latin1');
          if (r.rest.length) reusable = false;
          return finish();
        }
        socket.cork();
        socket.write(out, 'latin1');
        if (r.rest.length) body(r.rest);
        socket.uncork();
        return;
      }
    });

    // A kept connection may have been paused by the client's backpressure when its last answer ended.
    u.resume();

    /** Body bytes of the answer: passed on as they came, up to where the answer ends. */
    function body(chunk: Buffer): void {
      let endAt = -1;
      if (framing!.kind === 'length') {
        if (chunk.length >= left) endAt = left;
        else left -= chunk.length;
      } else if (framing!.kind === 'chunked') {
        const r = chunked!.feed(chunk);
        if (typeof r === 'string') return fail(502, 'upstream-error', `upstream ${r}`);
        endAt = r;
      }
      // A chunked answer's trailers are not passed on: its last chunk, then the empty line that ends it.
      const cut = chunked && chunked.trailerAt >= 0 ? chunked.trailerAt : endAt;
      const pass = cut < 0 ? chunk : chunk.subarray(0, cut);
      if (pass.length && !socket.write(pass)) waitForDrain(socket, u);
      if (chunked && endAt >= 0) socket.write(CRLF);
      if (endAt >= 0) {
        // Bytes after the end of the answer: an origin that cannot be trusted with another request.
        if (endAt < chunk.length) reusable = false;
        finish();
      }
    }

    /** The answer is complete. */
    function finish(): void {
      if (over) return;
      end({ decision: 'allow', reason: 'allowed' });
      stopListening();
      // The origin answered before it read the whole request body: its connection carries nothing more.
      if (bodyLeft > 0) reusable = false;
      if (reusable) keep(conn, u, keyOf(f));
      else u.destroy();
      if (closeClient) return lingerClose(socket);
      socket.setTimeout(d.idleTimeoutMs);
      const next = () => {
        if (socket.isPaused()) socket.resume();
        d.next(socket, held);
      };
      // The client has not read this answer yet: its next request waits until it has (ATTACK9: a client
      // that never reads would otherwise have answer after answer held for it).
      if (!socket.writableNeedDrain) return next();
      socket.pause();
      socket.once('drain', next);
    }
  }
}
