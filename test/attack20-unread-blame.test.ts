// ATTACK20 (a re-attack of fda4e21), finding F2 (low, audit), fixed: on node:http's path (a proxy-port
// request with a chunked body, any request inside a tunnel), a client that never read a large answer was
// logged as the origin's failure (`upstream-error`, "no answer from the upstream"); the fast path said
// "the client read nothing of the answer". Both now say the latter (proxy/http/forward.ts).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { startInproc, type Inproc } from './harness/inproc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SIZE = 16 * 1024 * 1024;
let server: http.Server;
let g: Inproc;
let port = 0;
t.before(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-length': SIZE });
      res.end(Buffer.alloc(SIZE, 0x61));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`], limits: { idleTimeoutMs: 1000 } });
});
t.teardown(async () => {
  await g?.close();
  server.closeAllConnections();
  server.close();
});

for (const path of ['fast path (GET)', "node:http's path (chunked POST)"])
  t.test(`${path}: a client that never reads is not logged as an origin failure`, async (t) => {
    const from = g.audit.events.length;
    const hp = `a.test:${port}`;
    const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
    await new Promise((r) => s.once('connect', r));
    s.on('error', () => undefined);
    s.pause();
    s.write(
      path.startsWith('fast')
        ? `GET http://${hp}/big HTTP/1.1\r\nHost: ${hp}\r\n\r\n`
        : `POST http://${hp}/big HTTP/1.1\r\nHost: ${hp}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    const line = (await g.audit.waitFor((e) => e.event === 'http' && g.audit.events.indexOf(e) >= from, 8000)) as unknown as Record<
      string,
      unknown
    >;
    t.comment(JSON.stringify(g.audit.events.slice(from)));
    t.not(line.decision, 'error', `decision ${line.decision}: ${line.detail}`);
    t.notMatch(String(line.detail ?? ''), /upstream/, 'the detail does not blame the upstream');
    s.destroy();
    await sleep(100);
  });
