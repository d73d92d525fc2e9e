// A request that closes its connection (`Connection: close`, or HTTP/1.0 without keep-alive) followed
// by more bytes, on node:http's path (the proxy port's HTTP/1.0 and chunked requests, every request in a
// plain-HTTP tunnel). The bytes after it are not requests (RFC 9112 9.6): they are dropped, as the fast
// path (plain.ts) drops them. Before, node:http's parser refused them (HPE_CLOSED_CONNECTION) and the
// gateway cut the connection: the closing request itself was never forwarded, answered or logged.
// Also: a request refused on the proxy port before its checks (pipelined after a refusal, an upgrade out
// of turn) is logged with the host it asked for, not "".
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { SENTINEL } from '../proxy/inject/credentials.js';
import { answers, portClient as onPort, sleep, tunnelClient as inTunnel, until } from './harness/clients.js';
import { answeringServer, startInproc, type Inproc } from './harness/inproc.js';
import { startInjected } from './harness/injected.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;

/** An origin that keeps the requests it got; a path with `slow` is answered after 150 ms. */
async function origin() {
  const { server, seen } = answeringServer(150);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

let g: Inproc;
let o: Awaited<ReturnType<typeof origin>>;
t.before(async () => {
  o = await origin();
  g = await startInproc({
    zone: { 'a.test': { a: ['127.0.0.1'] }, 'b.test': { a: ['127.0.0.1'] }, 'denied.test': { a: ['127.0.0.1'] } },
    rules: [],
  });
  g.setRules([`a.test:${o.port}`, `b.test:${o.port}`]);
});
t.teardown(async () => {
  await g?.close();
  o?.close();
});
const lines = (from: number) => g.audit.events.slice(from).map(F);

const portClient = () => onPort(g.proxy.address.port);
const tunnelClient = () => inTunnel(g.proxy.address.port, 'a.test', o.port);
const hp = () => `a.test:${o.port}`;
const CASES: Array<{ name: string; tunnel: boolean; bytes: () => string; path: string; method: string }> = [
  {
    name: 'in a tunnel, Connection: close then a request',
    tunnel: true,
    bytes: () => `GET /one HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\r\n\r\nGET /two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
    path: '/one',
    method: 'GET',
  },
  {
    name: 'in a tunnel, HTTP/1.0 then a request',
    tunnel: true,
    bytes: () => `GET /one HTTP/1.0\r\nHost: ${hp()}\r\n\r\nGET /two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
    path: '/one',
    method: 'GET',
  },
  {
    name: 'in a tunnel, Connection: close with a body, then junk',
    tunnel: true,
    bytes: () => `POST /one HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhelloxyz\x00\x01`,
    path: '/one',
    method: 'POST',
  },
  {
    name: 'on the proxy port, chunked with Proxy-Connection: close then a request',
    tunnel: false,
    bytes: () =>
      `POST http://${hp()}/one HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nProxy-Connection: close\r\n\r\n0\r\n\r\n` +
      `GET http://${hp()}/two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
    path: '/one',
    method: 'POST',
  },
  {
    name: 'on the proxy port, HTTP/1.0 then a request',
    tunnel: false,
    bytes: () => `GET http://${hp()}/one HTTP/1.0\r\nHost: ${hp()}\r\n\r\nGET http://${hp()}/two HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`,
    path: '/one',
    method: 'GET',
  },
  {
    name: 'on the proxy port, chunked with Connection: close then a request',
    tunnel: false,
    bytes: () =>
      `POST http://${hp()}/one HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n` +
      `GET http://${hp()}/two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
    path: '/one',
    method: 'POST',
  },
];

t.test('the request that closes the connection is forwarded, answered and logged; what follows it is dropped', async (t) => {
  for (const c of CASES) {
    const from = g.audit.events.length;
    const seen = o.seen.length;
    const conn = c.tunnel ? await tunnelClient() : portClient();
    conn.s.write(c.bytes());
    await Promise.race([conn.ended, sleep(3000)]);
    t.same(o.seen.slice(seen), [`${c.method} ${c.path}`], `${c.name}: only the closing request reached the origin`);
    t.same(answers(conn.got()), [c.path], `${c.name}: its answer reached the client, and only it`);
    const http_ = lines(from).filter((e) => e.event === 'http');
    t.match(
      http_,
      [{ decision: 'allow', reason: 'allowed', status: 200, method: c.method, host: 'a.test' }],
      `${c.name}: one line, the request's`,
    );
    t.equal(http_.length, 1, `${c.name}: no line for the dropped bytes (as on the fast path)`);
    conn.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
  t.same(g.reports, []);
});

t.test('bytes after the closing request while it waits its turn or its answer: the earlier answers come, in order', async (t) => {
  for (const tunnel of [true, false]) {
    const where = tunnel ? 'in a tunnel' : 'on the proxy port';
    const from = g.audit.events.length;
    const seen = o.seen.length;
    const conn = tunnel ? await tunnelClient() : portClient();
    const req = (path: string, close: boolean) =>
      tunnel
        ? `GET ${path} HTTP/1.1\r\nHost: ${hp()}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
        : `GET http://${hp()}${path} HTTP/1.0\r\nHost: ${hp()}\r\n${close ? '' : 'Connection: keep-alive\r\n'}\r\n`;
    // A slow answer first; the closing request waits for it; the dropped bytes come in a later write.
    conn.s.write(req('/a-slow', false) + req('/b', false) + req('/c-close', true));
    await sleep(30);
    conn.s.write(req('/d-dropped', false));
    await sleep(30);
    conn.s.write('\x16\x03\x01 not http at all');
    await Promise.race([conn.ended, sleep(3000)]);
    t.same(o.seen.slice(seen), ['GET /a-slow', 'GET /b', 'GET /c-close'], `${where}: the three requests, in order, nothing after`);
    t.same(answers(conn.got()), ['/a-slow', '/b', '/c-close'], `${where}: their answers, in order`);
    const http_ = lines(from).filter((e) => e.event === 'http');
    t.equal(http_.length, 3, `${where}: a line each`);
    t.ok(
      http_.every((e) => e.decision === 'allow' && e.status === 200),
      `${where}: all allowed, 200`,
    );
    conn.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
});

t.test('a client that keeps sending after the closing request still gets its whole answer (the gateway lingers)', async (t) => {
  for (const tunnel of [true, false]) {
    const where = tunnel ? 'in a tunnel' : 'on the proxy port';
    const conn = tunnel ? await tunnelClient() : portClient();
    const first = tunnel
      ? `GET /slow-1 HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\r\n\r\n`
      : `GET http://${hp()}/slow-1 HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`;
    conn.s.write(first);
    const junk = Buffer.alloc(16 * 1024, 'x');
    let writes = 0;
    const pump = setInterval(() => {
      if (conn.s.destroyed || writes++ > 60) return clearInterval(pump);
      conn.s.write(junk);
    }, 5);
    await Promise.race([conn.ended, sleep(3000)]);
    clearInterval(pump);
    t.same(answers(conn.got()), ['/slow-1'], `${where}: the answer arrived whole though the client kept sending`);
    conn.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
  t.same(g.reports, []);
});

t.test('a request refused before its checks on the proxy port is logged with the host it asked for', async (t) => {
  const from = g.audit.events.length;
  const conn = portClient();
  // A chunked request to a denied host (refused), then one to b.test pipelined after it (not forwarded).
  const chunked = (host: string, path: string) =>
    `POST http://${host}:${o.port}${path} HTTP/1.1\r\nHost: ${host}:${o.port}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`;
  conn.s.write(chunked('denied.test', '/x') + chunked('b.test', '/y'));
  await Promise.race([conn.ended, sleep(3000)]);
  await sleep(50);
  const http_ = lines(from).filter((e) => e.event === 'http');
  t.match(
    http_,
    [
      { host: 'denied.test', decision: 'deny', reason: 'not-allowlisted' },
      { host: 'b.test', port: o.port, method: 'POST', decision: 'deny', reason: 'bad-request', detail: /after a refused request/ },
    ],
    'the skipped request names b.test',
  );
  t.notOk('status' in (http_[1] ?? {}), 'nothing was written for it');
  conn.s.destroy();
});

t.test('in a credential-injected tunnel: the closing request is answered, what follows is dropped', async (t) => {
  const seen: string[] = [];
  const g = await startInjected('sk-close', (req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers.authorization}`);
    req.resume();
    req.on('end', () => res.end(`answer ${req.url}\n`));
  });
  t.teardown(() => g.close());
  const { port, audit, reports } = g;
  const c = await g.open();
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString('latin1')));
  const ended = new Promise<void>((r) => {
    c.once('end', () => r());
    c.once('close', () => r());
  });
  const h = `Host: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\n`;
  c.write(`GET /one HTTP/1.1\r\n${h}Connection: close\r\n\r\nGET /two HTTP/1.1\r\n${h}\r\n`);
  await Promise.race([ended, sleep(3000)]);
  t.same(seen, ['GET /one Bearer sk-close'], 'only the closing request reached the origin, with the credential');
  t.same(answers(got), ['/one'], 'its answer reached the client');
  t.match(
    audit.events.map(F).filter((e) => e.event === 'http'),
    [{ decision: 'allow', status: 200, method: 'GET' }],
    "one line, the request's",
  );
  t.equal(audit.events.map(F).filter((e) => e.event === 'http').length, 1, 'no other line');
  t.same(reports, []);
  c.destroy();
});
