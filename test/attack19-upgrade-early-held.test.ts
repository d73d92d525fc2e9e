// ATTACK19 (a re-attack of a4705e9): held up, kept as a check. More than 64 KiB sent after an upgrade
// request before the origin answers gets one 400 (and one line), its lingering close not cut by the
// upstream request's end, on the proxy port and in a tunnel.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let g: Inproc;
let origin: net.Server;
let port = 0;
const held: net.Socket[] = [];
t.before(async () => {
  // The origin reads the upgrade request and never answers.
  origin = net.createServer((s) => {
    s.on('error', () => undefined);
    held.push(s);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as net.AddressInfo).port;
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`] });
});
t.teardown(async () => {
  for (const s of held) s.destroy();
  await g?.close();
  origin?.close();
});
const upgrade = (target: string) =>
  `GET ${target} HTTP/1.1\r\nHost: a.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

for (const where of ['proxy port', 'tunnel'] as const) {
  t.test(`${where}: 1 MiB before the 101: the client gets the 400 its line says, not a reset`, async (t) => {
    const from = g.audit.events.length;
    let s: net.Socket;
    let got = '';
    let reset = false;
    let closed = false;
    if (where === 'tunnel') {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', port);
      s = tc.s;
      got = tc.data;
    } else {
      s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
      await new Promise((r) => s.once('connect', r));
    }
    s.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => (closed = true));
    s.write(upgrade(where === 'tunnel' ? '/ws' : `http://a.test:${port}/ws`));
    await sleep(200); // the upgrade is forwarded, the origin holds it
    // WebSocket frames before the 101, far more than 64 KiB
    const chunk = Buffer.alloc(64 * 1024, 0x82);
    for (let i = 0; i < 16 && !closed; i++) {
      s.write(chunk);
      await sleep(5);
    }
    for (let i = 0; i < 300 && !closed; i++) await sleep(10);
    const lines = g.audit.events
      .slice(from)
      .map(F)
      .filter((e) => e.event === 'http');
    t.comment(`got ${JSON.stringify(got.slice(0, 120))} reset=${reset} lines=${JSON.stringify(lines)}`);
    t.match(lines, [{ decision: 'deny', reason: 'bad-request', status: 400 }], 'its line: 400');
    t.match(got, /^HTTP\/1\.1 400 /, 'the client got the 400');
    t.notOk(reset, 'no reset');
    s.destroy();
  });
}
