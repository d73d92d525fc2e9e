// Raw clients of the proxy for the in-process tests: on the proxy port or inside a CONNECT tunnel,
// what they got, and when the gateway ended them; and small waits.
import net from 'node:net';
import { connectTunnel } from './inproc.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until `f()` holds, or `ms` pass (polled every 20 ms). */
export async function until(f: () => boolean, ms = 3000): Promise<void> {
  for (let i = 0; i < ms / 20 && !f(); i++) await sleep(20);
}

export type Where = 'tunnel' | 'proxy port';

export interface Conn {
  s: net.Socket;
  /** What the client got so far (latin1; in a tunnel, after the CONNECT's answer). */
  got(): string;
  /** The gateway's FIN or close. */
  ended: Promise<void>;
}

/** A client connection (half-open allowed) on the proxy port. */
export function portClient(proxyPort: number): Conn {
  const s = net.connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  const ended = new Promise<void>((r) => {
    s.once('end', () => r());
    s.once('close', () => r());
  });
  return { s, got: () => got, ended };
}

/** A client inside a CONNECT tunnel to `host:port`. */
export async function tunnelClient(proxyPort: number, host: string, port: number): Promise<Conn> {
  const tc = await connectTunnel(proxyPort, host, port);
  return { s: tc.s, got: () => tc.data, ended: tc.closed };
}

/** A client on the proxy port or inside a tunnel to `host:port`. */
export const openClient = (where: Where, proxyPort: number, host: string, port: number): Promise<Conn> =>
  where === 'tunnel' ? tunnelClient(proxyPort, host, port) : Promise.resolve(portClient(proxyPort));

/** The paths of the answers `answer <path>` in `text`, in order. */
export const answers = (text: string): string[] => [...text.matchAll(/answer (\S+)/g)].map((m) => m[1]!);

/** Write junk on `s` for `ms` as fast as it is taken (at most `cap` bytes); the bytes that left the client. */
export async function blast(s: net.Socket, ms: number, cap = 64 * 1024 * 1024): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 'x');
  const end = Date.now() + ms;
  while (Date.now() < end && !s.destroyed && s.bytesWritten < cap) {
    if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(100)]);
  }
  return s.bytesWritten;
}

/** A WebSocket upgrade request head for `target` (absolute on the proxy port, a path in a tunnel). */
export const upgradeHead = (target: string, hostPort: string): string =>
  `GET ${target} HTTP/1.1\r\nHost: ${hostPort}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** A client that sent a WebSocket upgrade for `/ws` to `host:port`, on the proxy port or inside a tunnel. */
export async function sendUpgrade(where: Where, proxyPort: number, host: string, port: number): Promise<Conn> {
  const c = await openClient(where, proxyPort, host, port);
  c.s.write(upgradeHead(where === 'tunnel' ? '/ws' : `http://${host}:${port}/ws`, `${host}:${port}`));
  return c;
}
