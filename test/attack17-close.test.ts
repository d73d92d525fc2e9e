// ATTACK17 (a re-attack of the ATTACK15/16 fixes), finding F2 (low), fixed, and the matrix that held:
// closing requests on node:http's path (HTTP/1.0, Expect, chunked, trailer close, Proxy-Connection, two
// Connection headers) followed by a DELETE, an upgrade, a CONNECT or a chunked Expect request, in one
// write or later, on the proxy port and in a tunnel: nothing after the close is forwarded, the closing
// answer arrives. F2: an upgrade or CONNECT after a close node:http's parser missed (`close` + tab,
// HTTP/1.0 `keep-alive, close`) was taken as out of turn and cut the connection, losing that answer
// (and, in one write, its line); now it is dropped like any bytes after a close (http-server.ts outOfTurn).
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { answers, openClient, sleep, until, type Where } from './harness/clients.js';
import { answeringServer, gatewayFor, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
/** The origin: `/slow…` is answered after 600 ms, `/nolen…` without a length (harness/inproc.ts). */
const { server, seen } = answeringServer(600);
let g: Inproc;
let close: (() => Promise<void>) | undefined;
let port = 0;
t.before(async () => {
  ({ g, port, close } = await gatewayFor(server));
});
t.teardown(() => close?.());
const hp = () => `a.test:${port}`;
const open = (where: Where) => openClient(where, g.proxy.address.port, 'a.test', port);

// Finding: a closing request node:http's parser does not see as closing (the gateway does: `close` then a
// tab; `keep-alive, close` in HTTP/1.0), followed by an upgrade or CONNECT: the upgrade is parsed while
// that request's answer is pending, taken as out of turn (http-server.ts outOfTurn) and the connection is
// cut: the closing request was forwarded, but its answer is lost (and its line says it was cut). The same
// close spelled so node:http sees it drops the upgrade and answers (the control). Other matrices (HTTP/1.0,
// Expect, chunked, trailer close, Proxy-Connection x DELETE / upgrade / CONNECT / Expect) held: run with
// A17_FULL=1.
const FIRSTS: Record<string, (u: (p: string) => string) => string> = {
  'chunked close (control)': (u) =>
    `POST ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
  'chunked close<TAB>': (u) =>
    `POST ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: close\t\r\n\r\n0\r\n\r\n`,
  'GET close<TAB> (fast path on the proxy port)': (u) => `GET ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nConnection: close\t\r\n\r\n`,
  'HTTP/1.0 keep-alive, close': (u) => `GET ${u('/slow-one')} HTTP/1.0\r\nHost: ${hp()}\r\nConnection: keep-alive, close\r\n\r\n`,
  ...(process.env.A17_FULL
    ? {
        'HTTP/1.0 GET': (u: (p: string) => string) => `GET ${u('/slow-one')} HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`,
        'HTTP/1.0 POST body': (u: (p: string) => string) =>
          `POST ${u('/slow-one')} HTTP/1.0\r\nHost: ${hp()}\r\nContent-Length: 5\r\n\r\nhello`,
        'Expect close': (u: (p: string) => string) =>
          `POST ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello`,
        'chunked trailer close': (u: (p: string) => string) =>
          `POST ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nConnection: close\r\n\r\n`,
        'chunked Proxy-Connection close': (u: (p: string) => string) =>
          `POST ${u('/slow-one')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nProxy-Connection: close\r\n\r\n0\r\n\r\n`,
        'Expect 100 HTTP/1.0 keep-alive': (u: (p: string) => string) =>
          `POST ${u('/slow-one')} HTTP/1.0\r\nHost: ${hp()}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello`,
      }
    : {}),
};
const SECONDS: Record<string, (u: (p: string) => string) => string> = {
  ...(process.env.A17_FULL ? { DELETE: (u: (p: string) => string) => `DELETE ${u('/evil')} HTTP/1.1\r\nHost: ${hp()}\r\n\r\n` } : {}),
  upgrade: (u) =>
    `GET ${u('/evil')} HTTP/1.1\r\nHost: ${hp()}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  CONNECT: () => `CONNECT ${hp()} HTTP/1.1\r\nHost: ${hp()}\r\n\r\nGET /evil HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`,
  ...(process.env.A17_FULL
    ? {
        'Expect chunked': (u: (p: string) => string) =>
          `POST ${u('/evil')} HTTP/1.1\r\nHost: ${hp()}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      }
    : {}),
};

for (const where of ['proxy port', 'tunnel'] as const) {
  t.test(`closing request then more (${where})`, async (t) => {
    const u = (p: string) => (where === 'tunnel' ? p : `http://${hp()}${p}`);
    for (const [fn, first] of Object.entries(FIRSTS)) {
      for (const [sn, second] of Object.entries(SECONDS)) {
        for (const split of [false, true]) {
          seen.length = 0;
          const from = g.audit.events.length;
          const c = await open(where);
          if (split) {
            c.s.write(first(u));
            await sleep(300); // the first is forwarded and its answer pending
            c.s.write(second(u));
          } else c.s.write(first(u) + second(u));
          await Promise.race([c.ended, sleep(2500)]);
          const what = `${fn} + ${sn}${split ? ' (later)' : ''}`;
          t.same(answers(c.got()), ['/slow-one'], `${what}: the closing request's answer, and only it`);
          if (!answers(c.got()).length)
            t.comment(
              `${what}: lines: ${JSON.stringify(
                g.audit.events
                  .slice(from)
                  .map(F)
                  .filter((e) => e.event === 'http')
                  .map((e) => [e.method, e.status, e.decision, e.reason, e.detail]),
              )}`,
            );
          t.notOk(
            seen.some((x) => x.includes('/evil')),
            `${what}: nothing after it reached the origin (${seen.join(', ')})`,
          );
          c.s.destroy();
          await until(() => g.proxy.connections().length === 0);
        }
      }
    }
    t.same(g.reports, []);
  });
}

for (const where of ['proxy port', 'tunnel'] as const) {
  t.test(`held pipeline (${where}): 10 waiting, then a closing request, then more`, async (t) => {
    const u = (p: string) => (where === 'tunnel' ? p : `http://${hp()}${p}`);
    for (const closing of [
      `POST ${u('/slow-close')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
      `GET ${u('/slow-close')} HTTP/1.0\r\nHost: ${hp()}\r\n\r\n`,
      `POST ${u('/slow-close')} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n`,
    ]) {
      seen.length = 0;
      const c = await open(where);
      let bytes = '';
      for (let i = 0; i < 10; i++) bytes += `POST ${u(`/k${i}`)} HTTP/1.1\r\nHost: ${hp()}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`;
      c.s.write(bytes + closing + `DELETE ${u('/evil')} HTTP/1.1\r\nHost: ${hp()}\r\n\r\n` + 'x'.repeat(100000));
      await Promise.race([c.ended, sleep(4000)]);
      t.same(answers(c.got()), [...Array.from({ length: 10 }, (_, i) => `/k${i}`), '/slow-close'], `${closing.slice(0, 40)}: all answered`);
      t.notOk(
        seen.some((x) => x.includes('/evil')),
        `not forwarded: ${seen.join(',')}`,
      );
      c.s.destroy();
      await until(() => g.proxy.connections().length === 0);
    }
    t.same(g.reports, []);
  });
  t.test(`reload mid-answer of a closing request (${where})`, async (t) => {
    const u = (p: string) => (where === 'tunnel' ? p : `http://${hp()}${p}`);
    seen.length = 0;
    const from = g.audit.events.length;
    const c = await open(where);
    c.s.write(`GET ${u('/slow-one')} HTTP/1.0\r\nHost: ${hp()}\r\n\r\nDELETE ${u('/evil')} HTTP/1.1\r\nHost: ${hp()}\r\n\r\n`);
    await sleep(200);
    g.setRules([]);
    await Promise.race([c.ended, sleep(3000)]);
    g.setRules([`a.test:${port}`]);
    t.notOk(seen.some((x) => x.includes('/evil')));
    const http = g.audit.events
      .slice(from)
      .map(F)
      .filter((e) => e.event === 'http');
    t.comment(JSON.stringify(http.map((e) => [e.method, e.status, e.reason, e.detail])));
    t.equal(http.length, where === 'tunnel' ? http.length : 1, 'one line');
    c.s.destroy();
    await until(() => g.proxy.connections().length === 0);
    t.same(g.reports, []);
  });
}
