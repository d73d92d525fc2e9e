// ATTACK17 (a re-attack), finding F3 (low-medium), fixed: what a client sent after an upgrade request
// while the origin had not answered (or during a refused answer) was read and dropped without bound, for
// up to the idle timeout (256 MiB in under a second here). It is now kept for the origin up to 64 KiB
// (more is refused with 400) and dropped during a refusal up to LINGER_BYTES (proxy/http/forward.ts).
import net from 'node:net';
import t from 'tap';
import { blast, sleep, upgradeHead } from './harness/clients.js';
import { gatewayFor, type Inproc } from './harness/inproc.js';

let g: Inproc;
let close: (() => Promise<void>) | undefined;
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
  ({ g, port, close } = await gatewayFor(origin));
});
t.teardown(() => close?.());
for (const m of ['silent', 'refuse-slow'] as const) {
  t.test(`upgrade then junk, origin ${m}: the gateway does not read it without bound`, async (t) => {
    mode = m;
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.write(upgradeHead(`http://a.test:${port}/ws`, `a.test:${port}`));
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
