// ATTACK11 (an attack session on the plain-HTTP and WebSocket paths). Findings, each fixed:
// - F1 (high): on node:http's path (HTTP/1.0, chunked or Expect requests on the proxy port, and every
//   request inside a plain-HTTP tunnel) http.Server emitted every pipelined request at once and each was
//   forwarded at once: one connection held 20,000 requests (170 MB), up to 256 origin connections, and
//   its close stalled the event loop for seconds (quadratic). Now a connection's requests are handled one
//   at a time, in order (pipeline.ts); the connection is not read while more than PIPELINE_PAUSE wait,
//   and closed past PIPELINE_MAX.
// - F2 (medium): a request pipelined after a refused one was still forwarded, and its line said 200
//   though the client never got an answer. Now nothing after a refusal is forwarded (its line says so).
// - F3: a WebSocket the gateway closed (reload, idle) after the client's FIN was logged closed_by client.
// - F4: a plain-HTTP tunnel closed after a refused request in it was logged closed_by client (or
//   idle-timeout), and its byte counts included the CONNECT head and the 200.
// - F5: a WebSocket whose client left (FIN) before the origin's 101 was logged 101, opened, and held
//   until the idle timeout.
// - An upgrade pipelined behind a request whose answer was not over would have had its 101 written into
//   that answer: now the connection is closed.
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { PIPELINE_MAX } from '../proxy/http/pipeline.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An origin that counts its connections (at once, most) and the requests it got; a path with `slow` is answered after 150 ms, `/reset` resets. */
async function countingOrigin() {
  const seen: string[] = [];
  let open = 0;
  let most = 0;
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.url?.startsWith('/reset')) return void req.socket.resetAndDestroy();
    const answer = () => res.end(`answer ${req.url}\n`);
    req.on('end', () => (req.url?.includes('slow') ? setTimeout(answer, 150) : answer()));
  });
  server.on('connection', (s: net.Socket) => {
    most = Math.max(most, ++open);
    s.on('close', () => open--);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    most: () => most,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A raw client: what it got, and a promise of the gateway's end. */
function client(port: number) {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const c = { s, got: '', ended: new Promise<void>((r) => s.once('close', () => r())) };
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => (c.got += d.toString('latin1')));
  return c;
}
const until = async (f: () => boolean, ms = 3000) => {
  for (let i = 0; i < ms / 20 && !f(); i++) await sleep(20);
};

let g: Inproc;
let o: Awaited<ReturnType<typeof countingOrigin>>;
t.before(async () => {
  o = await countingOrigin();
  g = await startInproc({
    zone: { 'a.test': { a: ['127.0.0.1'] }, 'b.test': { a: ['127.0.0.1'] }, 'denied.test': { a: ['127.0.0.1'] } },
    rules: [],
    limits: { idleTimeoutMs: 800 },
  });
});
t.beforeEach(() => g.setRules([`a.test:${o.port}`, `b.test:${o.port}`]));
t.teardown(async () => {
  await g?.close();
  o?.close();
});
const lines = (from: number) => g.audit.events.slice(from).map(F);

// A chunked request (node:http's path on the proxy port), empty body.
const chunked = (i: number, host = 'a.test') =>
  `POST http://${host}:${o.port}/c${i} HTTP/1.1\r\nHost: ${host}:${o.port}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`;

t.test('F1: thousands of pipelined requests in one write: never more than one forwarded, the connection closed', async (t) => {
  for (const where of ['proxy port', 'inside a tunnel']) {
    const from = g.audit.events.length;
    const seen = o.seen.length;
    let c: { s: net.Socket; ended: Promise<void> };
    if (where === 'proxy port') {
      c = client(g.proxy.address.port);
      c.s.write([...Array(3000).keys()].map((i) => chunked(i)).join(''));
    } else {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', o.port);
      c = { s: tc.s, ended: tc.closed };
      c.s.write([...Array(3000).keys()].map((i) => `GET /t${i} HTTP/1.1\r\nHost: a.test:${o.port}\r\n\r\n`).join(''));
    }
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, g.proxy.connections().length)), 1);
    await Promise.race([c.ended, sleep(3000)]);
    clearInterval(watch);
    t.ok(c.s.destroyed || c.s.readableEnded, `${where}: the gateway closed the connection`);
    t.ok(most <= 2, `${where}: at most one request (and the tunnel) held at a time (${most})`);
    t.ok(o.seen.length - seen <= PIPELINE_MAX, `${where}: at most ${PIPELINE_MAX} requests forwarded (${o.seen.length - seen})`);
    t.match(
      lines(from).filter((e) => e.event === 'http' && e.decision === 'deny'),
      [{ reason: 'bad-request', detail: /more than \d+ requests pipelined/ }],
      `${where}: one line for the cut`,
    );
    c.s.destroy();
    await until(() => g.proxy.connections().length === 0);
    t.equal(g.proxy.connections().length, 0, `${where}: nothing left in the registry`);
  }
  t.ok(o.most() <= 2, `never more than one origin connection per client connection (${o.most()})`);
  t.same(g.reports, []);
});

t.test('F1: a client pipelining at a pace is answered in full and in order, one request at a time', async (t) => {
  for (const where of ['proxy port (HTTP/1.0 keep-alive)', 'inside a tunnel']) {
    const N = 40;
    const path = (i: number) => `/q${i}${i % 5 ? '' : '-slow'}`;
    let c: { s: net.Socket; got: () => string };
    if (where.startsWith('proxy')) {
      const r = client(g.proxy.address.port);
      c = { s: r.s, got: () => r.got };
      for (let i = 0; i < N; i += 10) {
        r.s.write(
          [...Array(10).keys()]
            .map((k) => `GET http://a.test:${o.port}${path(i + k)} HTTP/1.0\r\nHost: a.test:${o.port}\r\nConnection: keep-alive\r\n\r\n`)
            .join(''),
        );
        await sleep(5);
      }
    } else {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', o.port);
      c = { s: tc.s, got: () => tc.data };
      for (let i = 0; i < N; i += 10) {
        tc.s.write([...Array(10).keys()].map((k) => `GET ${path(i + k)} HTTP/1.1\r\nHost: a.test:${o.port}\r\n\r\n`).join(''));
        await sleep(5);
      }
    }
    await until(() => (c.got().match(/answer /g) ?? []).length >= N, 8000);
    const got = [...c.got().matchAll(/answer \/q(\d+)/g)].map((m) => Number(m[1]));
    t.same(got, [...Array(N).keys()], `${where}: every answer, in order`);
    c.s.destroy();
  }
  await until(() => g.proxy.connections().length === 0);
  t.equal(g.proxy.connections().length, 0);
});

t.test('F2: nothing pipelined after a refused or failed request is forwarded; each such request has its line', async (t) => {
  const cases = [
    {
      first: `GET http://denied.test:${o.port}/x HTTP/1.0\r\nHost: denied.test:${o.port}\r\nConnection: keep-alive\r\n\r\n`,
      why: 'denied',
    },
    { first: chunked(0).replace('/c0', '/reset'), why: 'the upstream reset' },
  ];
  for (const { first, why } of cases) {
    const from = g.audit.events.length;
    const c = client(g.proxy.address.port);
    const slow = `GET http://a.test:${o.port}/slow HTTP/1.0\r\nHost: a.test:${o.port}\r\nConnection: keep-alive\r\n\r\n`;
    c.s.write(slow + first + chunked(7).replace('/c7', '/after-refusal'));
    await Promise.race([c.ended, sleep(3000)]);
    await sleep(100);
    t.notOk(
      o.seen.some((r) => r.includes('/after-refusal')),
      `${why}: the request after it never reached the origin`,
    );
    const ls = lines(from).filter((e) => e.event === 'http');
    t.match(
      ls.find((e) => e.method === 'GET' && e.decision === 'allow'),
      { status: 200 },
      `${why}: the first answer delivered`,
    );
    t.match(
      ls.find((e) => e.method === 'POST' && String(e.detail).includes('after a refused request')),
      { decision: 'deny', reason: 'bad-request', status: undefined },
      `${why}: the request after it: a line, no status`,
    );
    t.equal(ls.length, 3, `${why}: one line per request`);
    t.match(c.got, /^HTTP\/1\.1 200 [^]*HTTP\/1\.1 (403|502) /, `${why}: the client got the answer and the refusal`);
    t.equal((c.got.match(/HTTP\/1\.1 /g) ?? []).length, 2, `${why}: and nothing more`);
  }
});

t.test('an upgrade pipelined behind an unanswered request closes the connection (its 101 would land in that answer)', async (t) => {
  const from = g.audit.events.length;
  const seen = o.seen.length;
  const c = client(g.proxy.address.port);
  c.s.write(
    `GET http://a.test:${o.port}/slow HTTP/1.0\r\nHost: a.test:${o.port}\r\nConnection: keep-alive\r\n\r\n` +
      `GET http://a.test:${o.port}/ws HTTP/1.1\r\nHost: a.test:${o.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
  );
  await Promise.race([c.ended, sleep(3000)]);
  t.ok(c.s.destroyed || c.s.readableEnded, 'closed');
  t.notOk(o.seen.slice(seen).includes('GET /ws'), 'the upgrade never reached the origin');
  t.match(
    lines(from).find((e) => e.event === 'http' && e.decision === 'deny'),
    { reason: 'bad-request', detail: /an upgrade to "http:\/\/a\.test:\d+\/ws" pipelined behind requests/, status: undefined },
  );
  await until(() => g.proxy.connections().length === 0);
  t.equal(g.proxy.connections().length, 0);
});

/** A WebSocket origin: 101 after `delay` ms, then an echo. */
async function wsOrigin(delay = 0) {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    let upgraded = false;
    s.on('data', (d: Buffer) => {
      if (upgraded) return void s.write(d);
      setTimeout(() => {
        if (!s.writable) return;
        upgraded = true;
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      }, delay);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}
const upgrade = (port: number) =>
  `GET http://a.test:${port}/ws HTTP/1.1\r\nHost: a.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

t.test('F3: a WebSocket the gateway closes after the client FIN is logged with the gateway reason', async (t) => {
  const w = await wsOrigin();
  t.teardown(w.close);
  for (const how of ['policy-reload', 'idle-timeout'] as const) {
    g.setRules([`a.test:${w.port}`]);
    const from = g.audit.events.length;
    const c = client(g.proxy.address.port);
    c.s.write(upgrade(w.port));
    await until(() => c.got.includes('101'));
    c.s.end(); // the client FIN: the WebSocket stays open one way
    await sleep(100);
    if (how === 'policy-reload') g.setRules([`b.test:${w.port}`]);
    await until(() => lines(from).some((e) => e.event === 'tunnel_close'), 3000);
    t.match(
      lines(from).filter((e) => e.event === 'tunnel_close'),
      [{ closed_by: how }],
      `${how} after the client FIN: closed_by ${how}`,
    );
    c.s.destroy();
  }
});

t.test('F5: a WebSocket whose client left before the 101 is not opened', async (t) => {
  const w = await wsOrigin(300);
  t.teardown(w.close);
  g.setRules([`a.test:${w.port}`]);
  const from = g.audit.events.length;
  const c = client(g.proxy.address.port);
  c.s.write(upgrade(w.port));
  await sleep(50);
  c.s.end();
  await Promise.race([c.ended, sleep(2000)]);
  await sleep(400);
  t.notMatch(c.got, /101/, 'no 101 written');
  const ls = lines(from);
  t.match(
    ls.filter((e) => e.event === 'http'),
    [{ decision: 'allow', status: undefined, detail: /the client closed before the upstream answered/ }],
  );
  t.equal(ls.filter((e) => e.event === 'tunnel_close').length, 0, 'never opened: no close line');
  t.equal(g.proxy.connections().length, 0, 'nothing held');
  c.s.destroy();
});

t.test('F4: a plain-HTTP tunnel closed after a refused request in it says so; its bytes are its own', async (t) => {
  const from = g.audit.events.length;
  const tc = await connectTunnel(g.proxy.address.port, 'a.test', o.port);
  const good = `GET /one HTTP/1.1\r\nHost: a.test:${o.port}\r\n\r\n`;
  tc.s.write(good);
  await until(() => tc.data.includes('answer /one'));
  const bad = `GET /two HTTP/1.1\r\nHost: b.test:${o.port}\r\n\r\n`;
  tc.s.write(bad);
  await tc.closed;
  tc.s.destroy();
  await until(() => lines(from).some((e) => e.event === 'tunnel_close'));
  const ls = lines(from);
  t.match(
    ls.find((e) => e.reason === 'host-mismatch'),
    { decision: 'deny', status: 403 },
  );
  const close = ls.find((e) => e.event === 'tunnel_close');
  t.match(close, { closed_by: 'request-refused' });
  t.equal(close?.bytes_up, good.length + bad.length, 'bytes_up: the requests, not the CONNECT head');
  t.equal(close?.bytes_down, Buffer.byteLength(tc.data, 'latin1'), 'bytes_down: the answers, not the 200');
  // A head the parser refuses (a 400 written by the gateway on the tunnel): the same.
  const from2 = g.audit.events.length;
  const tj = await connectTunnel(g.proxy.address.port, 'a.test', o.port);
  tj.s.write(`GET /one HTTP/1.1\r\nHost: a.test:${o.port}\r\n\r\n`);
  await until(() => tj.data.includes('answer /one'));
  tj.s.write('GET /\x01 HTTP/1.1\r\n\r\n');
  await tj.closed;
  tj.s.destroy();
  await until(() => lines(from2).some((e) => e.event === 'tunnel_close'));
  t.match(
    lines(from2).find((e) => e.event === 'tunnel_close'),
    { closed_by: 'request-refused' },
    'a refused head: closed_by request-refused',
  );
});
