// ATTACK17 (a re-attack of 5b78dc6), finding F4 (low), fixed: a client that half-closed (FIN) after a
// refused upgrade's head arrived lost the rest of the answer, and its line said it left before any
// answer, without a status. The answer now goes on to its end, and its line has the status.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BODY = 'no websocket here';
let g: Inproc;
let origin: net.Server;
let port = 0;
let delayMs = 0;
t.before(async () => {
  // The origin: a 403 head at once, its body `delayMs` later.
  origin = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      s.write(`HTTP/1.1 403 Forbidden\r\nContent-Length: ${BODY.length}\r\n\r\n`);
      setTimeout(() => s.end(BODY), delayMs);
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
const upgrade = (target: string) =>
  `GET ${target} HTTP/1.1\r\nHost: a.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
async function send(where: 'proxy port' | 'tunnel') {
  if (where === 'tunnel') {
    const tc = await connectTunnel(g.proxy.address.port, 'a.test', port);
    tc.s.write(upgrade('/ws'));
    return { s: tc.s, got: () => tc.data };
  }
  const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.write(upgrade(`http://a.test:${port}/ws`));
  return { s, got: () => got };
}
const lines = (from: number) =>
  g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.event === 'http');

for (const where of ['proxy port', 'tunnel'] as const) {
  t.test(`${where}: the client half-closes once the refusal's head came: the answer goes on, its line has the status`, async (t) => {
    delayMs = 500;
    const from = g.audit.events.length;
    const c = await send(where);
    for (let i = 0; i < 100 && !/403 Forbidden/.test(c.got()); i++) await sleep(10);
    t.match(c.got(), /403 Forbidden/, 'the head came');
    c.s.end(); // FIN: done sending, still reading
    await sleep(1200);
    t.match(c.got(), /no websocket here$/, 'the whole answer');
    t.match(lines(from), [{ decision: 'allow', status: 403 }], `one line with the status passed on: ${JSON.stringify(lines(from))}`);
    t.equal(lines(from).length, 1);
    c.s.destroy();
  });
}
