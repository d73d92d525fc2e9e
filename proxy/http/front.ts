// The proxy port's request heads. A connection that opens with a clean CONNECT head (head.ts) gets its
// tunnel without http.Server: its parser, request object and per-connection bookkeeping cost more than
// the rest of a tunnel's set-up. A clean absolute-form plain-HTTP request goes to the forwarder of
// plain.ts the same way, and comes back here for the connection's next head. Anything else (/healthz,
// a head the reader does not take, a head still unfinished after FAST_PATH_READS reads) is handed to
// http.Server with the bytes read so far, and is parsed and answered there exactly as before.
import type net from 'node:net';
import { connectAuthority, readHead, type RequestHead } from './head.js';

/**
 * How many reads the CONNECT fast path waits for a complete head (a client sends it in one write). The
 * reader starts over at each read, so a head trickled in many small reads would cost the square of its
 * length (ATTACK6); after this many, http.Server's parser, which reads incrementally, takes over.
 */
export const FAST_PATH_READS = 4;

const EMPTY = Buffer.alloc(0);

export interface FrontDoor {
  /** Longest head read here (request line, headers, empty line); http.Server answers a longer one 431. */
  maxHeaderBytes: number;
  /** From the connection's first moment until a head is read here or by http.Server (slowloris). */
  headersTimeoutMs: number;
  /** A clean CONNECT head: its request-target, and the client bytes that followed it. */
  connect(socket: net.Socket, authority: string, rest: Buffer): void;
  /** Another clean head: true when it was taken (the plain-HTTP forwarder), false to hand it to http.Server. */
  request(socket: net.Socket, head: RequestHead, rest: Buffer): boolean;
  /**
   * Not one: give the socket to http.Server (emit 'connection'), then the bytes read so far to its parser,
   * and the end when the client's FIN was read.
   */
  handOver(socket: net.Socket, read: Buffer): void;
  /** Nothing complete by the headers deadline (not even by http.Server after a hand-over): answer 408. */
  timedOut(socket: net.Socket): void;
}

/**
 * Read a client connection's next head (call in the connection's scope): `read`, the bytes of it read
 * already, and `again` after an earlier request of this connection (it may then close quietly when
 * nothing comes by the deadline). Returns `parsed`, to call when http.Server has read the first request
 * of a socket handed to it: that stops the deadline, which otherwise runs from the first moment, through
 * the hand-over.
 */
export function frontDoor(d: FrontDoor): {
  accept(socket: net.Socket, read?: Buffer, again?: boolean): void;
  parsed(socket: net.Socket): void;
} {
  const handedOver = new WeakMap<net.Socket, NodeJS.Timeout>();
  const accept = (socket: net.Socket, read?: Buffer, again = false) => {
    let buf: Buffer | undefined;
    let reads = 0;
    // A client FIN read with the end of its last request: http.Server decides, as before.
    if (socket.readableEnded) return d.handOver(socket, read ?? EMPTY);
    const deadline = setTimeout(() => {
      handedOver.delete(socket);
      stopReading();
      // An idle keep-alive connection closes quietly, as http.Server's would.
      if (again && !buf?.length) socket.destroy();
      else d.timedOut(socket);
    }, d.headersTimeoutMs);
    const onClose = () => clearTimeout(deadline);
    const stopReading = () => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
    };
    const handOver = () => {
      stopReading();
      handedOver.set(socket, deadline);
      d.handOver(socket, buf ?? EMPTY);
    };
    // The client ended before a complete head: http.Server ends it, or answers a partial head 400, as
    // before (handOver passes the end on).
    const onEnd = () => handOver();
    /** A head read here: this door's part is over. */
    const taken = () => {
      stopReading();
      clearTimeout(deadline);
      socket.removeListener('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      const r = readHead(buf, d.maxHeaderBytes);
      if (r.kind === 'need-more' && ++reads < FAST_PATH_READS) return;
      if (r.kind !== 'head') return handOver();
      if (r.head.method === 'CONNECT') {
        const authority = connectAuthority(r.head);
        if (authority === undefined) return handOver();
        taken();
        // Later bytes wait in the socket until the tunnel reads them (as http.Server leaves a CONNECT socket).
        (socket as { readableFlowing: boolean | null }).readableFlowing = null;
        return d.connect(socket, authority, r.rest);
      }
      // The forwarder reads the socket from here on (its listeners are added, this door's removed).
      if (d.request(socket, r.head, r.rest)) taken();
      else handOver();
    };
    socket.on('close', onClose);
    socket.on('end', onEnd);
    socket.on('data', onData);
    if (read?.length) onData(read);
  };
  const parsed = (socket: net.Socket) => {
    const t = handedOver.get(socket);
    if (t === undefined) return;
    clearTimeout(t);
    handedOver.delete(socket);
  };
  return { accept, parsed };
}
