// A scripted origin for the plain-HTTP tests: a raw TCP server on 127.0.0.1 that answers each complete
// request (its head and its Content-Length body) with exactly the bytes a test gives it, so a test can
// send what no real HTTP server would (malformed heads, bytes after an answer, an early close).
import net from 'node:net';

/** What the origin does with one request: these bytes; these bytes and close; close; run this; nothing. */
export type Answer = string | { text: string; close: true } | 'CLOSE' | ((c: net.Socket) => void) | undefined;

export interface Scripted {
  port: number;
  /** Connections accepted, and closed (by either side). */
  connections: number;
  closed: number;
  /** The request bytes of every connection, as received. */
  received: string[];
  /** The answer to the `n`th request (from 0) of its connection. */
  answer: (request: string, n: number) => Answer;
  /** Close every open connection now. */
  dropIdle(): void;
  close(): Promise<void>;
}

export const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

export async function scriptedOrigin(): Promise<Scripted> {
  const sockets = new Set<net.Socket>();
  const s: Scripted = {
    port: 0,
    connections: 0,
    closed: 0,
    received: [],
    answer: () => OK,
    dropIdle: () => {
      for (const c of sockets) c.destroy();
    },
    close: async () => undefined,
  };
  const server = net.createServer((c) => {
    const me = s.connections++;
    s.received[me] = '';
    sockets.add(c);
    c.on('close', () => {
      sockets.delete(c);
      s.closed++;
    });
    c.on('error', () => undefined);
    let buf = '';
    let n = 0;
    c.on('data', (d: Buffer) => {
      s.received[me] += d.toString('latin1');
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        const req = buf.slice(0, end + 4 + len);
        buf = buf.slice(end + 4 + len);
        const a = s.answer(req, n++);
        if (a === undefined) continue;
        if (a === 'CLOSE') return void c.destroy();
        if (typeof a === 'function') a(c);
        else if (typeof a === 'string') c.write(Buffer.from(a, 'latin1'));
        else return void c.end(Buffer.from(a.text, 'latin1'));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.port = (server.address() as net.AddressInfo).port;
  s.close = () => {
    s.dropIdle();
    return new Promise((r) => server.close(() => r()));
  };
  return s;
}
