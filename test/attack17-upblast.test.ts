// ATTACK17 (a re-attack), finding F3 (low-medium), fixed: what a client sent after an upgrade request
// while the origin had not answered (or during a refused answer) was read and dropped without bound, for
// up to the idle timeout (256 MiB in under a second here). It is now kept for the origin up to 64 KiB
// (more is refused with 400) and dropped during a refusal up to LINGER_BYTES (proxy/http/forward.ts).
import net from 'node:net';
import t from 'tap';
import { startInproc, type Inproc } from './harness/inproc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let g: Inproc;
let origin: net.Server;
let port = 0;
let mode: 'silent' | 'refuse-slow' = 'silent';
t.before(async () => {
  origin = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pause(); // reads nothing more after the head
    s.once('data', () => undefined);
    s.resume();
    s.once('data', () => {
      s.pause();
      if (mode === 'refuse-slow') {
        s.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\n');
        setTimeout(() => s.end('nope!'), 3000);
      }
    });
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as net.AddressInfo).port;
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`] });
});
t.teardown(async () => {
  await g?.close();
  origin?.close();
});
async function blast(s: net.Socket, ms: number, cap = 256 * 1024 * 1024): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 'x');
  const end = Date.now() + ms;
  while (Date.now() < end && !s.destroyed && s.bytesWritten < cap) {
    if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(100)]);
  }
  return s.bytesWritten;
}
for (const m of ['silent', 'refuse-slow'] as const) {
  t.test(`upgrade then junk, origin ${m}: the gateway does not read it without bound`, async (t) => {
    mode = m;
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.write(
      `GET http://a.test:${port}/ws HTTP/1.1\r\nHost: a.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await sleep(300);
    const before = process.memoryUsage();
    const n = await blast(s, 2000);
    const after = process.memoryUsage();
    t.comment(
      `rss +${((after.rss - before.rss) / 1e6).toFixed(1)} MB, arrayBuffers +${((after.arrayBuffers - before.arrayBuffers) / 1e6).toFixed(1)} MB, still open: ${!s.destroyed}`,
    );
    t.ok(n < 32 * 1024 * 1024, `bytes the client got out in 2 s: ${n}`);
    s.destroy();
    await sleep(200);
  });
}
