// ATTACK19 (a re-attack of a4705e9), finding F1 (low), fixed: after a closing request node:http's parser
// missed (`Connection: close<TAB>`), an upgrade pipelined after it made node:http let go of the socket
// (its 'drain' and 'error' listeners among them), so a large closing answer read slowly by the client
// stalled after 64 KiB until the idle timeout, and its line blamed the origin. The answer now arrives
// whole (http-server.ts outOfTurn passes 'drain' on to the answer being written).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SIZE = 8 * 1024 * 1024;
let server: http.Server;
let g: Inproc;
let port = 0;
const seen: string[] = [];
t.before(async () => {
  server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-length': SIZE });
      res.end(Buffer.alloc(SIZE, 0x61));
    });
  });
  server.on('upgrade', (req, s: net.Socket) => {
    seen.push(`UPGRADE ${req.url}`);
    s.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`] });
});
t.teardown(async () => {
  await g?.close();
  server.closeAllConnections();
  server.close();
});
const hp = () => `a.test:${port}`;

const CASES = {
  'close<TAB> + upgrade (finding)': { close: 'close\t', upgrade: true },
  'close<TAB> alone (control)': { close: 'close\t', upgrade: false },
  'close + upgrade (control: node:http sees the close)': { close: 'close', upgrade: true },
};
for (const [name, c] of Object.entries(CASES))
  for (const where of ['proxy port', 'tunnel'] as const) {
    t.test(`${where}: ${name}: 8 MiB answer read late arrives whole`, async (t) => {
      const from = g.audit.events.length;
      let s: net.Socket;
      let bytes = 0;
      let ended = false;
      const u = (p: string) => (where === 'tunnel' ? p : `http://${hp()}${p}`);
      if (where === 'tunnel') {
        const tc = await connectTunnel(g.proxy.address.port, 'a.test', port);
        s = tc.s;
        bytes = tc.data.length;
      } else {
        s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
        await new Promise((r) => s.once('connect', r));
      }
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => (bytes += d.length));
      s.on('end', () => (ended = true));
      s.on('close', () => (ended = true));
      s.pause();
      s.write(
        `POST ${u('/big')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: ${c.close}\r\n\r\n0\r\n\r\n` +
          (c.upgrade
            ? `GET ${u('/ws')} HTTP/1.1\r\nHost: ${hp()}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
              'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
            : ''),
      );
      await sleep(1500); // the gateway's writes back up
      s.resume();
      for (let i = 0; i < 400 && !ended; i++) await sleep(10);
      const lines = g.audit.events
        .slice(from)
        .map(F)
        .filter((e) => e.event === 'http');
      t.comment(`bytes=${bytes} ended=${ended} seen=${JSON.stringify(seen)} lines=${JSON.stringify(lines)}`);
      t.ok(bytes > SIZE, `the whole answer came (${bytes} of > ${SIZE})`);
      t.ok(ended, 'the connection closed');
      t.notOk(
        seen.some((x) => x.startsWith('UPGRADE')),
        'the upgrade was not forwarded',
      );
      s.destroy();
    });
  }
