// ATTACK17 (a re-attack of 5b78dc6), finding F4 (low), fixed: a client that half-closed (FIN) after a
// refused upgrade's head arrived lost the rest of the answer, and its line said it left before any
// answer, without a status. The answer now goes on to its end, and its line has the status.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { sendUpgrade, sleep, type Where } from './harness/clients.js';
import { gatewayFor, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const BODY = 'no websocket here';
let g: Inproc;
let close: (() => Promise<void>) | undefined;
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
  ({ g, port, close } = await gatewayFor(origin));
});
t.teardown(() => close?.());
const send = (where: Where) => sendUpgrade(where, g.proxy.address.port, 'a.test', port);
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
