// ATTACK10 (pool): requests the proxy leaves to node:http (HTTP/1.0, chunked bodies, Expect, requests
// inside tunnels) went out through one keep-alive pool keyed by address only. An origin that sent bytes
// nobody asked for (or late) on a pooled connection had them read as the answer to the next request on
// it: another client's, for another host at the same address. Now (forward.ts `ownedPool`, the rules of
// the plain-HTTP path's kept connections, plain.ts) an origin connection serves one client connection and
// one host name, closes with the client connection, and is closed when it says anything while idle.
import net from 'node:net';
import t from 'tap';
import { startInproc, type Inproc } from './harness/inproc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const FAKE = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nFAKE';
const REAL = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nREAL';

let g: Inproc;
let origin: net.Server;
let port = 0;
let lateMs = 0;
let accepted = 0;
t.before(async () => {
  // Keep-alive origin: /1 is answered, then `lateMs` later an answer nobody asked for; anything else: REAL.
  origin = net.createServer((s) => {
    accepted++;
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        if (head.includes(' /1 ')) {
          s.write(OK);
          setTimeout(() => s.writable && s.write(FAKE), lateMs);
        } else s.write(REAL);
      }
    });
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as net.AddressInfo).port;
  g = await startInproc({
    zone: { 'a.test': { a: ['127.0.0.1'] }, 'b.test': { a: ['127.0.0.1'] } },
    rules: [`a.test:${port}`, `b.test:${port}`],
  });
});
t.teardown(async () => {
  await g.close();
  origin.close();
});

/** One HTTP/1.0 request (node:http's path) on a connection of its own; the whole reply. */
function get10(host: string, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
    let reply = '';
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    s.on('close', () => resolve(reply));
    s.once('connect', () => s.write(`GET http://${host}:${port}${path} HTTP/1.0\r\nHost: ${host}:${port}\r\n\r\n`));
    setTimeout(() => s.destroy(), 2000).unref();
  });
}

/** Requests one after another on one client connection (each sent once the previous answer came); the whole reply. */
function exchange(requests: string[]): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
    let reply = '';
    let answers = 0;
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      const n = reply.split('REAL').length - 1;
      if (n > answers && n < requests.length) s.write(requests[n]!);
      answers = n;
    });
    s.on('close', () => resolve(reply));
    s.once('connect', () => s.write(requests[0]!));
    setTimeout(() => s.destroy(), 2000).unref();
  });
}

t.test('bytes an idle pooled origin connection sends never become the next request’s answer', async (t) => {
  for (const late of [0, 5, 30]) {
    lateMs = late;
    const x = await get10('a.test', '/1');
    t.match(x, /\r\n\r\nok$/, `a.test /1 answered (its unsolicited answer ${late} ms later)`);
    await sleep(late + 50);
    const before = accepted;
    const y = await get10('b.test', '/2');
    t.match(y, /\r\n\r\nREAL$/, `b.test /2 gets its own answer, not a.test's unsolicited one (${late} ms)`);
    t.notMatch(y, /FAKE/);
    t.equal(accepted, before + 1, 'on a new origin connection: the chatty one was closed');
  }
  // Late instead of idle: the unasked answer comes while another client's request waits for its own.
  lateMs = 40;
  const x = get10('a.test', '/1');
  await sleep(10);
  const y = await get10('b.test', '/2');
  t.match(y, /\r\n\r\nREAL$/, "another client's request never rides a connection of this one");
  await x;
  // The same client connection, the same host, a quiet origin: its connection is reused.
  const before = accepted;
  const both = await exchange([
    `GET http://a.test:${port}/2 HTTP/1.0\r\nHost: a.test:${port}\r\nConnection: keep-alive\r\n\r\n`,
    `GET http://a.test:${port}/3 HTTP/1.0\r\nHost: a.test:${port}\r\n\r\n`,
  ]);
  t.equal(both.match(/REAL/g)?.length, 2, 'both answered');
  t.equal(accepted, before + 1, 'one origin connection for both');
});
