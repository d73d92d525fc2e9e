// The requests a client connection pipelines on node:http's path (the proxy port's hand-over, and
// requests inside plain-HTTP tunnels). http.Server parses every request a read holds and emits each at
// once, whether or not the answers before it are over; left alone, one connection could hold thousands
// of requests (and their origin connections) at a time (ATTACK11). Here, as on the fast path (plain.ts),
// a connection's requests are handled one at a time, in order:
// - a request is admitted and forwarded (or refused) once the answer before it is over;
// - requests parsed and waiting are bounded: past PIPELINE_PAUSE the connection is not read until they
//   are down to half; past PIPELINE_MAX (one read holds that many only if they are small) it is closed;
// - a refusal stops the pipeline: a refused request's answer closes the connection, so nothing after it
//   is forwarded (each such request gets a line saying so);
// - so does any answer that closes the connection (the client asked for it, or an HTTP/1.0 answer
//   without a length): nothing after it is handled, and it has no line (the client asked for no more).
import type http from 'node:http';
import type { Duplex } from 'node:stream';

/** Unanswered requests on one connection past which it is not read until half of them are answered. */
export const PIPELINE_PAUSE = 8;
/** Unanswered requests on one connection past which it is closed. */
export const PIPELINE_MAX = 64;

interface Pipeline {
  /** Requests numbered so far. */
  arrived: number;
  /** Requests whose answer is not over. */
  open: number;
  /** The number of the first request refused on this connection; Infinity: none yet. */
  refusedAt: number;
  /** Resolved when the newest request's handling and answer are over: the next request's turn. */
  turn: Promise<void>;
  /** Reading stopped here (PIPELINE_PAUSE). */
  paused: boolean;
  /** The server's pause flag on the socket reads `paused` too (see `hold`). */
  holdable?: boolean;
  /** The newest request parsed (its body may still be being read). */
  newest?: http.IncomingMessage;
  /** Told at the connection's first refusal (connect.ts: a plain-HTTP tunnel's close line names it). */
  onRefused?: () => void;
  /** Told when the hold ends (`timeHead`). */
  onRelease?: () => void;
  /** The number of the first request whose answer closed the connection (node:http's own close); Infinity: none. */
  closedAt: number;
  /** A request asked for the connection to close after its answer (`closing`). */
  closing?: boolean;
  /** Told once no answer is pending (`whenAnswered`). */
  onAnswered?: () => void;
}

const pipelines = new WeakMap<Duplex, Pipeline>();
/** Each request's number on its connection (`numberOf`). */
const numbers = new WeakMap<http.IncomingMessage, number>();
/** Requests refused before their turn (http-server.ts: a body the parser refused): their turn does nothing. */
const dropped = new WeakSet<http.IncomingMessage>();

/** What node:http's server keeps on a connection's socket (its own pause, and its parser). */
type ServedSocket = Duplex & {
  _paused?: boolean;
  parser?: { resume(): void } | null;
  _handle?: { reading?: boolean; readStop?(): number } | null;
};

/** Stop the socket's handle: the server's parser reads it itself, whether or not the stream flows. */
function stopHandle(socket: ServedSocket): void {
  const h = socket._handle;
  if (h?.reading && h.readStop) {
    h.reading = false;
    h.readStop();
  }
}

/**
 * Stop reading `socket` for its waiting requests. node:http resumes a socket after each request it
 * parses (and after each answer it writes) unless its own `_paused` is set: that flag is made to read
 * true while the connection is held, whatever the server sets it to. A resume it scheduled before the
 * hold still starts the handle when it runs: its 'resume' event stops it again.
 */
function hold(socket: ServedSocket, p: Pipeline): void {
  if (!p.holdable) {
    p.holdable = true;
    let own = socket._paused ?? false;
    Object.defineProperty(socket, '_paused', {
      configurable: true,
      enumerable: true,
      get: () => own || p.paused,
      set: (v: boolean) => void (own = v),
    });
    socket.on('resume', () => {
      if (p.paused) stopHandle(socket);
    });
  }
  p.paused = true;
  socket.pause();
  stopHandle(socket);
}

/** Read `socket` again, unless the server itself still holds it (it resumes it then, as always). */
function release(socket: ServedSocket, p: Pipeline): void {
  p.paused = false;
  const released = p.onRelease;
  p.onRelease = undefined;
  released?.();
  if (socket._paused || socket.destroyed) return;
  // The server pauses its parser after a read that paused the socket: both go on, as the server does.
  socket.parser?.resume();
  socket.resume();
}

function pipelineOf(socket: Duplex): Pipeline {
  let p = pipelines.get(socket);
  if (!p)
    pipelines.set(socket, (p = { arrived: 0, open: 0, refusedAt: Infinity, closedAt: Infinity, turn: Promise.resolve(), paused: false }));
  return p;
}

/** A request's number on its connection (given when first asked, which is when it arrives). */
export function numberOf(req: http.IncomingMessage): number {
  let n = numbers.get(req);
  if (n === undefined) numbers.set(req, (n = ++pipelineOf(req.socket).arrived));
  return n;
}

/** Why a request is not handled (and its line says so). */
export type Skipped = 'over-limit' | 'after-refusal';

export const SKIPPED_DETAIL: Readonly<Record<Skipped, string>> = {
  'over-limit': `more than ${PIPELINE_MAX} requests pipelined without waiting for answers: the connection was closed`,
  'after-refusal': 'sent after a refused request on the same connection (closed after that answer): not forwarded',
};

/** Whether the connection is held (not read) for its waiting requests: handToHttp leaves it so. */
export const held = (socket: Duplex): boolean => pipelines.get(socket)?.paused ?? false;

/**
 * Handle a request node:http parsed, in its connection's order: `handle` runs once the answer before it
 * is over, unless the request is not to be handled: its connection was closed meanwhile (nothing to
 * say: the line of the request that closed it does), it is one too many (`over-limit`: `skip` is told,
 * then `closeAll`), or it comes after a refusal (`skip` is told). The returned promise is the
 * handling's (a rejection is the caller's to report).
 */
export function inTurn(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handle: () => unknown,
  skip: (why: Skipped) => void,
  closeAll: () => void,
): Promise<void> {
  const socket = req.socket;
  const p = pipelineOf(socket);
  const n = numberOf(req);
  if (socket.destroyed) return Promise.resolve();
  p.open++;
  p.newest = req;
  const answered = new Promise<void>((resolve) =>
    res.once('close', () => {
      // node:http closes the connection after this answer (a `connection: close` one): nothing after it is handled.
      if ((res as http.ServerResponse & { _last?: boolean })._last) p.closedAt = Math.min(p.closedAt, n);
      p.open--;
      if (p.paused && p.open <= PIPELINE_PAUSE / 2) release(socket, p);
      resolve();
      if (p.open === 0) {
        const told = p.onAnswered;
        p.onAnswered = undefined;
        told?.();
      }
    }),
  );
  if (p.open > PIPELINE_MAX) {
    skip('over-limit');
    closeAll();
    return Promise.resolve();
  }
  if (p.open > PIPELINE_PAUSE && !p.paused) hold(socket, p);
  const run = p.turn.then(() => {
    if (socket.destroyed || dropped.has(req)) return;
    if (n > p.refusedAt) return skip('after-refusal');
    // After an answer that closed the connection: never handled, as if the close had come first
    // (it is under way), so no line either.
    if (n > p.closedAt) return;
    return handle();
  });
  // The next request's turn: this one's answer is over (and its handling, should it end later).
  p.turn = Promise.all([run, answered]).then(
    () => undefined,
    () => undefined,
  );
  return run as Promise<void>;
}

function refusedAt(p: Pipeline, n: number): void {
  p.refusedAt = Math.min(p.refusedAt, n);
  const told = p.onRefused;
  p.onRefused = undefined;
  told?.();
}

/** A refusal was written (or queued) for `req`: nothing its connection sent after it is forwarded. */
export function refused(req: http.IncomingMessage): void {
  refusedAt(pipelineOf(req.socket), numberOf(req));
}

/** A refusal written on the connection itself (not an answer to a request): nothing after it is forwarded. */
export function refusedHere(socket: Duplex): void {
  const p = pipelineOf(socket);
  refusedAt(p, p.arrived + 1);
}

/** Call `fn` at the first refusal on `socket`. */
export function whenRefused(socket: Duplex, fn: () => void): void {
  pipelineOf(socket).onRefused = fn;
}

/** The newest request parsed on `socket` whose answer is not over. */
export function newest(socket: Duplex): http.IncomingMessage | undefined {
  const p = pipelines.get(socket);
  return p?.open ? p.newest : undefined;
}

/** `req` was refused before its turn came (its line is written): its turn does nothing. */
export function drop(req: http.IncomingMessage): void {
  dropped.add(req);
}

/**
 * node:http's headers timeout fired on the unfinished head of a held connection: the gateway had stopped
 * reading it, so it is not late yet. node:http no longer times that head, so it is timed here: from the
 * end of the hold, `ms` more; `late` is told if no request was parsed by then (ATTACK14: otherwise a
 * client could keep the connection open for good, a byte at a time).
 */
export function timeHead(socket: Duplex, ms: number, late: () => void): void {
  const p = pipelineOf(socket);
  const arrived = p.arrived;
  p.onRelease = () => {
    const timer = setTimeout(() => {
      if (p.arrived === arrived && !socket.destroyed) late();
    }, ms);
    socket.once('close', () => clearTimeout(timer));
  };
}

/** Whether a refusal was written on `socket` (its connection closes after it). */
export const refusedOn = (socket: Duplex): boolean => (pipelines.get(socket)?.refusedAt ?? Infinity) !== Infinity;

/** Requests on `socket` whose answer is not over. */
export const unanswered = (socket: Duplex): number => pipelines.get(socket)?.open ?? 0;

/** Call `fn` once no answer is pending on `socket` (now, if none is). */
export function whenAnswered(socket: Duplex, fn: () => void): void {
  const p = pipelineOf(socket);
  if (p.open === 0) return fn();
  p.onAnswered = fn;
}

/** `req` closes its connection after its answer: nothing the client sends after it is a request. */
export function closing(req: http.IncomingMessage): void {
  pipelineOf(req.socket).closing = true;
}

/** Whether a request on `socket` asked for the connection to close after its answer. */
export const closingOn = (socket: Duplex): boolean => pipelines.get(socket)?.closing ?? false;
