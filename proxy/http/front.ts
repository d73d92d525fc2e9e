// The proxy port's first bytes. A connection that opens with a clean CONNECT head (connect-head.ts) gets
// its tunnel without http.Server: its parser, request object and per-connection bookkeeping cost more
// than the rest of a tunnel's set-up. Anything else (a plain-HTTP request, /healthz, a head the reader
// does not take, a head still unfinished after FAST_PATH_READS reads) is handed to http.Server with the
// bytes read so far, and is parsed and answered there exactly as before.
import type net from 'node:net';
import { readConnectHead } from './connect-head.js';

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
  /**
   * Not one: give the socket to http.Server (emit 'connection'), then the bytes read so far to its parser,
   * and the end when the client's FIN was read.
   */
  handOver(socket: net.Socket, read: Buffer): void;
  /** Nothing complete by the headers deadline (not even by http.Server after a hand-over): answer 408. */
  timedOut(socket: net.Socket): void;
}

/**
 * Read a new client connection's first bytes (call in the connection's scope). Returns `parsed`, to call
 * when http.Server has read the first request of a socket handed to it: that stops the deadline, which
 * otherwise runs from the first moment, through the hand-over.
 */
export function frontDoor(d: FrontDoor): { accept(socket: net.Socket): void; parsed(socket: net.Socket): void } {
  const handedOver = new WeakMap<net.Socket, NodeJS.Timeout>();
  const accept = (socket: net.Socket) => {
    let buf: Buffer | undefined;
    let reads = 0;
    const deadline = setTimeout(() => {
      handedOver.delete(socket);
      stopReading();
      d.timedOut(socket);
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
    const onData = (chunk: Buffer) => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      const r = readConnectHead(buf, d.maxHeaderBytes);
      if (r.kind === 'need-more' && ++reads < FAST_PATH_READS) return;
      if (r.kind !== 'connect') return handOver();
      stopReading();
      clearTimeout(deadline);
      socket.removeListener('close', onClose);
      // Later bytes wait in the socket until the tunnel reads them (as http.Server leaves a CONNECT socket).
      (socket as { readableFlowing: boolean | null }).readableFlowing = null;
      d.connect(socket, r.authority, r.rest);
    };
    socket.on('close', onClose);
    socket.on('end', onEnd);
    socket.on('data', onData);
  };
  const parsed = (socket: net.Socket) => {
    const t = handedOver.get(socket);
    if (t === undefined) return;
    clearTimeout(t);
    handedOver.delete(socket);
  };
  return { accept, parsed };
}
