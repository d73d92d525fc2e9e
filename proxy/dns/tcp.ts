// DNS over TCP, one client connection: length-prefixed messages, answered in parallel and written in
// the order they complete (RFC 7766 allows it; each answer carries its query's ID). What a client can
// make the gateway hold is bounded (ATTACK16): a message longer than any query the server answers
// closes the connection as soon as its length is read; at most MAX_TCP_PIPELINE queries are answered
// at a time; and while the client does not read its answers (the socket's buffer is full) nothing more
// is read from it, so unread answers stay within the socket's buffer and one round of pending ones.
import type net from 'node:net';

/** Queries answered at a time on one connection; the rest wait, unread. */
export const MAX_TCP_PIPELINE = 32;
/** A connection with no traffic either way for this long is closed. */
export const TCP_IDLE_MS = 10_000;

/** Serve `s`: each message goes to `respond` (undefined: no answer); a failure is told and closes `s`. */
export function serveTcp(
  s: net.Socket,
  maxQueryBytes: number,
  respond: (msg: Buffer) => Promise<Buffer | undefined>,
  fail: (err: Error) => void,
): void {
  s.on('error', () => s.destroy());
  s.setTimeout(TCP_IDLE_MS, () => s.destroy());
  /** Bytes read and not yet taken: at most one read past a message, as reading stops while one waits. */
  let buf: Buffer = Buffer.alloc(0);
  let pending = 0;
  let ended = false;
  /** The length of the message at the head of `buf` (undefined: not read yet). */
  const length = () => (buf.length >= 2 ? buf.readUInt16BE(0) : undefined);
  const complete = () => {
    const n = length();
    return n !== undefined && buf.length >= 2 + n;
  };
  const answered = (out: Buffer | undefined) => {
    pending--;
    if (out && s.writable) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      s.write(Buffer.concat([len, out]));
    }
    pump();
  };
  /** Take the complete messages the limits allow, then read on only if nothing holds the connection. */
  function pump(): void {
    while (!s.destroyed && pending < MAX_TCP_PIPELINE && !s.writableNeedDrain && complete()) {
      const n = length()!;
      const msg = buf.subarray(2, 2 + n);
      buf = buf.subarray(2 + n);
      pending++;
      respond(msg).then(answered, (err: Error) => {
        fail(err);
        s.destroy();
      });
    }
    if (s.destroyed) return;
    // Longer than any query answered here: closed now, not read to its end.
    if ((length() ?? 0) > maxQueryBytes) return void s.destroy();
    if (ended) {
      if (pending === 0 && !complete()) {
        if (buf.length)
          s.destroy(); // a message cut short
        else s.end();
      }
      return;
    }
    if (complete() || pending >= MAX_TCP_PIPELINE || s.writableNeedDrain) s.pause();
    else s.resume();
  }
  s.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    pump();
  });
  s.on('drain', pump);
  s.on('end', () => {
    ended = true;
    pump();
  });
}
