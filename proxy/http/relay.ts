// Copying the bytes of an open tunnel. Two ways in, one rule for both: a direction stops reading only
// once more than RELAY_BUFFER bytes wait unsent, and goes on at the next 'drain'.
// - relay(): a socket's 'data' events (the client side: the HTTP server made that socket).
// - UpstreamReads: the upstream socket reads into a buffer given to net.connect (`onread`): one shared
//   by every tunnel for short reads (copied out), then, once a read is larger, its own, reused from read
//   to read while every write completes at once and grown up to READ_MAX: a bulk download costs a
//   quarter of the reads (and their events and allocations) of Node's 64 KiB default, an idle or
//   interactive tunnel holds no read buffer.
import type net from 'node:net';

/** Bytes a tunnel direction may hold unsent before it stops reading (per direction). */
export const RELAY_BUFFER = 128 * 1024;
/** An upstream read buffer's first size, and the size it grows to once a read fills it. */
export const READ_START = 16 * 1024;
export const READ_MAX = 256 * 1024;

/** Send `chunk` on; past RELAY_BUFFER unsent, stop reading `from` until `to` drains. */
function forward(from: net.Socket, to: net.Socket, chunk: Buffer): void {
  if (!to.write(chunk) && to.writableLength > RELAY_BUFFER) {
    from.pause();
    to.once('drain', () => from.resume());
  }
}

/**
 * Copy one direction of a tunnel from 'data' events. Like pipe(), but it stops reading only once more
 * than RELAY_BUFFER bytes wait to be sent: pipe() pauses after every chunk larger than the socket's
 * 16 KiB high-water mark (all of them, at 64 KiB a read) and resumes a tick later, even when the kernel
 * took the chunk at once.
 */
export function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (chunk: Buffer) => forward(from, to, chunk));
  passEnd(from, to);
}

/** End `to` when `from` ends: at once if it already did (a FIN read while the tunnel was still checked). */
function passEnd(from: net.Socket, to: net.Socket): void {
  if (from.readableEnded) to.end();
  else from.on('end', () => to.end());
}

/**
 * The read buffer every upstream shares until it has bulk data: while it is inspected, and while its reads
 * are short (its bytes are copied out at once). A connection's last read (its end) costs no allocation,
 * and an idle tunnel holds no buffer.
 */
const SHARED_READ = Buffer.allocUnsafeSlow(READ_START);
/** The largest read copied out of the shared buffer (copies up to half of Buffer.poolSize come from Node's pool). */
const COPY_MAX = 4096;

/**
 * The reads of a tunnel's upstream socket: pass `onread` to net.connect (the socket then emits no
 * 'data'; 'end', 'error', 'close', pause() and resume() are as usual). While the tunnel is inspected,
 * and until a read brings more than COPY_MAX bytes (bulk data), every read lands in the shared buffer
 * and what was read is handed on as a copy (the check may keep it; a relayed write may queue it). After
 * that the tunnel reads into a buffer of its own, reused only when the write of the last read left
 * nothing queued (the kernel has the bytes: nothing refers to the buffer any more), otherwise the next
 * read gets a new one.
 */
export class UpstreamReads {
  private size = READ_START;
  private buf: Buffer | undefined;
  private sink: (chunk: Buffer) => void = () => undefined;
  /** Where the last chunk was written (relay mode); undefined while inspecting. */
  private to: net.Socket | undefined;
  /** A read was larger than COPY_MAX: bulk data, from now on read into buffers of its own. */
  private bulk = false;

  readonly onread: net.OnReadOpts = {
    buffer: () => this.next(),
    callback: (n: number, buf: Uint8Array) => {
      // More than a small read: bulk data (a copy would allocate). A full read grows the next buffer.
      if (n > COPY_MAX) this.bulk = true;
      if (n === buf.length && this.size < READ_MAX) this.size = Math.min(this.size * 4, READ_MAX);
      const chunk = (buf as Buffer).subarray(0, n);
      this.sink(buf === SHARED_READ ? Buffer.from(chunk) : chunk);
      return true; // backpressure is pause() and resume(), as for 'data'
    },
  };

  /** Bytes from the upstream go to `fn` (the first-bytes check), each in a buffer of its own. */
  inspectWith(fn: (chunk: Buffer) => void): void {
    this.sink = fn;
    this.to = undefined;
  }

  /** Relay what the upstream sends to `to` from now on (and end `to` when the upstream ends). */
  relayTo(from: net.Socket, to: net.Socket): void {
    this.to = to;
    this.buf = undefined; // the last inspected read may still be referred to
    this.sink = (chunk) => forward(from, to, chunk);
    passEnd(from, to);
  }

  private next(): Buffer {
    const to = this.to;
    // Inspecting, or no bulk data yet: the shared buffer (the callback hands on a copy of what was read).
    if (to === undefined || !this.bulk) return SHARED_READ;
    const reusable = to.writableLength === 0 && !to.destroyed && this.buf?.length === this.size;
    if (reusable) return this.buf!;
    const buf = Buffer.allocUnsafeSlow(this.size);
    this.buf = buf;
    return buf;
  }
}
