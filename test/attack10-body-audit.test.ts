// ATTACK10 (body): a chunked request (left to http.Server) whose body turns malformed after its head
// was admitted and forwarded got two audit lines, neither true: its own said the client closed
// (`allow`, "the client closed before the upstream answered") and the parser's 400 named no host. Now
// the request's one line says the gateway refused its body (deny, bad-request, the parser's code, 400).
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let g: Inproc;
let origin: net.Server;
let port = 0;
let received = '';
t.before(async () => {
  // An origin that waits for the whole body (never answers here).
  origin = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (received += d.toString('latin1')));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as net.AddressInfo).port;
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`] });
});
t.teardown(async () => {
  await g.close();
  origin.close();
});

t.test('a request whose body the parser refuses after it was forwarded has one line: the refusal', async (t) => {
  for (const [what, body, code] of [
    ['chunk size over 2^53', '5\r\nhello\r\n10000000000000005\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['garbage chunk size', '5\r\nhello\r\nzz\r\n', 'HPE_INVALID_CHUNK_SIZE'],
  ] as const) {
    const from = g.audit.events.length;
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
      let r = '';
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => (r += d.toString('latin1')));
      s.on('close', () => resolve(r));
      s.once('connect', async () => {
        s.write(`POST http://a.test:${port}/upload HTTP/1.1\r\nHost: a.test:${port}\r\nTransfer-Encoding: chunked\r\n\r\n`);
        await sleep(100);
        s.write(body);
      });
      setTimeout(() => s.destroy(), 2000).unref();
    });
    await sleep(50);
    t.match(reply, /^HTTP\/1\.1 400 /, `${what}: answered 400`);
    const lines = g.audit.events.slice(from).map(F);
    t.equal(lines.length, 1, `${what}: one audit line`);
    t.match(lines[0], { event: 'http', host: 'a.test', port, method: 'POST', decision: 'deny', reason: 'bad-request', status: 400 });
    t.match(String(lines[0]?.detail), code);
  }
  t.match(received, /^POST \/upload HTTP\/1\.1\r\n/, 'the head had been forwarded (the origin saw a truncated body only)');
});
