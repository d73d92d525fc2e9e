// ATTACK15 (an attack session on the handling of a request that closes its connection, commit 3ba5525),
// on node:http's path (HTTP/1.0, chunked and Expect requests on the proxy port; every request in a
// tunnel). Findings, each fixed:
// - F1 (medium-high): an answer node:http closes the connection after by itself (an HTTP/1.0 keep-alive
//   client answered without a length; /healthz to one) did not stop the pipeline: the request pipelined
//   after it was still forwarded (a DELETE ran, though the client, told "close", would send it again),
//   and logged "the client closed before the upstream answered". Now nothing after it is handled.
// - F2 (medium): node:http's parser misses spellings of close the gateway honours elsewhere (`close`
//   followed by a tab; `keep-alive, close` in HTTP/1.0; Proxy-Connection: close beside Connection:
//   keep-alive): the requests after it were forwarded. Every path now reads close the same way.
// - F3 (medium): a chunked request whose trailer says Connection: close: its answer said keep-alive and
//   the connection never closed, every later byte read and dropped at full speed (300 MiB in 2 s).
// - F4 (low): bytes after a closing request were read without bound while its answer was slow.
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { LINGER_BYTES } from '../proxy/http/reply.js';
import { answers, blast, openClient, portClient as onPort, sleep, until, type Where } from './harness/clients.js';
import { answeringServer, gatewayFor, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;

/** The origin: `/slow…` is answered after 1500 ms, `/nolen…` without a length (harness/inproc.ts). */
const { server, seen } = answeringServer(1500);
let g: Inproc;
let close: (() => Promise<void>) | undefined;
let port = 0;
t.before(async () => {
  ({ g, port, close } = await gatewayFor(server));
});
t.teardown(() => close?.());
const hp = () => `a.test:${port}`;
const httpLines = (from: number) =>
  g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.event === 'http');

const portClient = () => onPort(g.proxy.address.port);
const open = (where: Where) => openClient(where, g.proxy.address.port, 'a.test', port);
const target = (where: Where, path: string) => (where === 'tunnel' ? path : `http://${hp()}${path}`);

t.test('F1: nothing pipelined after an answer node:http closes the connection after is handled', async (t) => {
  for (const where of ['tunnel', 'proxy port'] as const) {
    const from = g.audit.events.length;
    seen.length = 0;
    const c = await open(where);
    const req = (p: string, m = 'GET') => `${m} ${target(where, p)} HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive\r\n\r\n`;
    c.s.write(req('/nolen-one') + req('/two', 'DELETE'));
    await Promise.race([c.ended, sleep(2000)]);
    await sleep(100);
    t.match(c.got(), /connection: close/i, `${where}: the answer to /nolen-one closes the connection (HTTP/1.0, no length)`);
    t.same(answers(c.got()), ['/nolen-one'], `${where}: that answer, whole`);
    t.same(seen, ['GET /nolen-one'], `${where}: the DELETE never reached the origin`);
    t.match(httpLines(from), [{ method: 'GET', decision: 'allow', status: 200 }], `${where}: the GET's line`);
    t.equal(httpLines(from).length, 1, `${where}: no line for the DELETE (never handled, as if the close came first)`);
    c.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
  // /healthz answered to an HTTP/1.0 keep-alive client (no length): the same.
  const from = g.audit.events.length;
  seen.length = 0;
  const c = portClient();
  c.s.write(
    `GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nDELETE http://${hp()}/two HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive\r\n\r\n`,
  );
  await Promise.race([c.ended, sleep(2000)]);
  await sleep(100);
  t.match(c.got(), /connection: close/i, '/healthz: answered with Connection: close');
  t.same(seen, [], '/healthz: the DELETE never reached the origin');
  t.same(httpLines(from), [], '/healthz: no line for the DELETE');
  c.s.destroy();
  t.same(g.reports, []);
});

const SPELLINGS: Array<{ name: string; where: 'tunnel' | 'proxy port'; bytes: () => string }> = [
  {
    name: 'HTTP/1.0 Connection: keep-alive, close',
    where: 'proxy port',
    bytes: () =>
      `GET http://${hp()}/one HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive, close\r\n\r\n` +
      `GET http://${hp()}/two HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'HTTP/1.0 Connection: keep-alive and Proxy-Connection: close',
    where: 'proxy port',
    bytes: () =>
      `GET http://${hp()}/one HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive\r\nProxy-Connection: close\r\n\r\n` +
      `GET http://${hp()}/two HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'HTTP/1.0 two Connection headers, keep-alive then close',
    where: 'tunnel',
    bytes: () =>
      `GET /one HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nGET /two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'HTTP/1.0 Connection: close, keep-alive',
    where: 'tunnel',
    bytes: () => `GET /one HTTP/1.0\r\nHost: ${hp()}\r\nConnection: close, keep-alive\r\n\r\nGET /two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'HTTP/1.1 Connection: close<TAB>',
    where: 'tunnel',
    bytes: () => `GET /one HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\t\r\n\r\nGET /two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'chunked HTTP/1.1 Connection: close<TAB>',
    where: 'proxy port',
    bytes: () =>
      `POST http://${hp()}/one HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: close\t\r\n\r\n0\r\n\r\n` +
      `GET http://${hp()}/two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  },
  {
    name: 'the fast path, HTTP/1.1 GET Connection: close<TAB> (parity)',
    where: 'proxy port',
    bytes: () =>
      `GET http://${hp()}/one HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\t\r\n\r\nGET http://${hp()}/two HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  },
];

t.test('F2: every spelling of close the gateway honours stops the connection after that answer', async (t) => {
  for (const c of SPELLINGS) {
    const from = g.audit.events.length;
    seen.length = 0;
    const conn = await open(c.where);
    conn.s.write(c.bytes());
    await Promise.race([conn.ended, sleep(1500)]);
    t.same(answers(conn.got()), ['/one'], `${c.where}, ${c.name}: only the closing request's answer`);
    t.same(
      seen.map((s) => s.split(' ')[1]),
      ['/one'],
      `${c.where}, ${c.name}: only the closing request reached the origin`,
    );
    t.equal(httpLines(from).length, 1, `${c.where}, ${c.name}: one line`);
    conn.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
  t.same(g.reports, []);
});

t.test('F3: a chunked request whose trailer says Connection: close: the connection closes after its answer', async (t) => {
  for (const where of ['tunnel', 'proxy port'] as const) {
    const c = await open(where);
    let closed = false;
    void c.ended.then(() => (closed = true));
    c.s.write(
      `POST ${target(where, '/one')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n`,
    );
    await until(() => answers(c.got()).length === 1);
    t.same(answers(c.got()), ['/one'], `${where}: answered`);
    // What the client sends after it is dropped, and the gateway's close is not held up by it.
    for (let i = 0; i < 4 && !closed; i++) {
      c.s.write(`GET ${target(where, '/two')} HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`);
      await sleep(100);
    }
    await until(() => closed, 2000);
    t.ok(closed, `${where}: the gateway ended the connection`);
    t.same(answers(c.got()), ['/one'], `${where}: nothing after was answered`);
    const took = closed ? 0 : await blast(c.s, 1000);
    t.ok(took < 2 * LINGER_BYTES, `${where}: junk after it is not read without end`);
    c.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
});

t.test('F4: bytes after a closing request are bounded while its answer is slow', async (t) => {
  for (const where of ['tunnel', 'proxy port'] as const) {
    const from = g.audit.events.length;
    const c = await open(where);
    const head =
      where === 'tunnel'
        ? `GET /slow-one HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\r\n\r\n`
        : `GET http://${hp()}/slow-one HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`;
    c.s.write(head);
    await sleep(100);
    const took = await blast(c.s, 1200);
    t.ok(took < 4 * LINGER_BYTES, `${where}: the gateway stopped reading (${(took / 1048576).toFixed(1)} MiB taken)`);
    await Promise.race([c.ended, sleep(2500)]);
    t.ok(c.s.destroyed || c.s.readableEnded, `${where}: the connection was closed`);
    await until(() => httpLines(from).length > 0, 3000);
    t.match(
      httpLines(from),
      [{ method: 'GET', detail: /bytes were sent after a request that closes the connection/ }],
      `${where}: the cut request's line says why`,
    );
    c.s.destroy();
    await until(() => g.proxy.connections().length === 0);
  }
  t.same(g.reports, []);
});
