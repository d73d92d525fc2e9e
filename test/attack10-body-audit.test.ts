// ATTACK10 (body): a chunked request (left to http.Server) whose body turns malformed after its head
// was admitted and forwarded got two audit lines, neither true: its own said the client closed
// (`allow`, "the client closed before the upstream answered") and the parser's 400 named no host. Now
// the request's one line says the gateway refused its body (deny, bad-request, the parser's code, 400).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

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
  g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] }, 'x.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${port}`] });
});
t.teardown(async () => {
  await g.close();
  origin.close();
});

t.test('a request whose body the parser refuses after it was forwarded has one line: the refusal', async (t) => {
  for (const [what, body, code] of [
    ['chunk size over 2^53', '10000000000000005\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['garbage chunk size', 'zz\r\n', 'HPE_INVALID_CHUNK_SIZE'],
  ] as const) {
    const from = g.audit.events.length;
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
      let r = '';
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => (r += d.toString('latin1')));
      s.on('close', () => resolve(r));
      s.once('connect', async () => {
        // A first chunk makes the forwarded request go out (head and chunk), then the bad one.
        s.write(`POST http://a.test:${port}/upload HTTP/1.1\r\nHost: a.test:${port}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`);
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

// Re-attack of the fixes above, requests inside a plain-HTTP tunnel (node:http's path), pipelined:
// - a response queued behind another never emitted 'close' when the client left: the request stayed in
//   the registry and had no audit line (31 KB each, a reload did not free them);
// - a refused pipelined body had its 400 written into the previous request's streaming answer;
// - junk after a complete request was logged as that request's refused body.

/** An HTTP origin: /slow answers half now and half 600 ms later; /hold never answers; others `ok` after the body. */
async function httpOrigin() {
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') {
      res.writeHead(200, { 'content-length': '20' });
      res.write('AAAAAAAAAA');
      setTimeout(() => res.end('BBBBBBBBBB'), 600);
    } else if (req.url === '/hold') req.resume();
    else {
      req.resume();
      req.on('end', () => res.end('ok'));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A CONNECT tunnel to x.test:`p` whose first bytes will be plain HTTP. */
const httpTunnel = (p: number) => connectTunnel(g.proxy.address.port, 'x.test', p);

t.test('pipelined requests inside a tunnel: each forwarded has its line and leaves the registry when the client goes', async (t) => {
  const o = await httpOrigin();
  t.teardown(o.close);
  g.setRules([`x.test:${o.port}`]);
  const from = g.audit.events.length;
  for (let i = 0; i < 5; i++) {
    const c = await httpTunnel(o.port);
    c.s.write(`GET /hold HTTP/1.1\r\nHost: x.test:${o.port}\r\n\r\nGET /hold HTTP/1.1\r\nHost: x.test:${o.port}\r\n\r\n`);
    await sleep(100);
    c.s.destroy();
  }
  await sleep(300);
  t.equal(g.proxy.connections().length, 0, 'nothing left in the registry');
  const lines = g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.event === 'http');
  // One at a time (pipeline.ts): the second request of each pair was still waiting its turn when the
  // client left; it was never handled, and has no line.
  t.equal(lines.length, 5, 'one line per forwarded request');
  t.ok(
    lines.every((e) => e.decision === 'allow' && e.status === undefined),
    'each: allowed, no answer',
  );
});

t.test('a refused pipelined body never writes into the answer before it; junk after a request is not that request', async (t) => {
  const o = await httpOrigin();
  t.teardown(o.close);
  g.setRules([`x.test:${o.port}`]);
  const from = g.audit.events.length;
  const c = await httpTunnel(o.port);
  c.s.write(`GET /slow HTTP/1.1\r\nHost: x.test:${o.port}\r\n\r\n`);
  for (let i = 0; i < 100 && !c.data.includes('AAAAAAAAAA'); i++) await sleep(10);
  c.s.write(`POST /b HTTP/1.1\r\nHost: x.test:${o.port}\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n\r\n`);
  await c.closed;
  t.notMatch(c.data, /400 Bad Request/, 'no refusal written inside the streaming answer');
  const lines = g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.event === 'http');
  // The POST waited its turn behind the GET (pipeline.ts): its line is written when it is refused.
  t.equal(lines.length, 2, 'one line each');
  const post = lines.find((e) => e.method === 'POST');
  t.match(
    lines.find((e) => e.method === 'GET'),
    { decision: 'allow', status: 200, detail: /the connection was closed/ },
  );
  t.match(post, { decision: 'deny', reason: 'bad-request', detail: /the request body: HPE_/ });
  t.equal(post?.status, undefined, 'the refused request: no status (nothing could be written)');
  // A complete GET, then bytes that are not a request, before its answer.
  const from2 = g.audit.events.length;
  const d = await httpTunnel(o.port);
  d.s.write(`GET /hold HTTP/1.1\r\nHost: x.test:${o.port}\r\n\r\n`);
  await sleep(50);
  d.s.write('\x00\x01 not a request\r\n\r\n');
  await d.closed;
  const after = g.audit.events
    .slice(from2)
    .map(F)
    .filter((e) => e.event === 'http');
  t.match(
    after.find((e) => e.method === 'GET'),
    { decision: 'allow', reason: 'allowed', detail: /the connection was closed/ },
    'the GET is not logged as refused',
  );
  t.match(
    after.find((e) => e.method === undefined),
    { decision: 'deny', reason: 'bad-request', detail: 'HPE_INVALID_METHOD' },
    'the junk has its own line',
  );
  t.equal(g.proxy.connections().length, 0);
});
