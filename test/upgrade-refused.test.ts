// A WebSocket upgrade the origin refuses (answers other than 101): its answer is passed on, and its line
// is written once that answer is over or cut, saying which. Before, the line was written (allow, with
// the status) as the answer's head was passed on: an answer cut by a reload or by the origin's abort
// looked complete in the log; and a client that reset its connection before any answer was logged as a
// 502 (`upstream-error`) it never got.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { sendUpgrade, sleep, type Where } from './harness/clients.js';
import { gatewayFor, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;

/** How the origin answers the next upgrade. */
let mode: 'full' | 'partial' | 'abort' | 'none' = 'full';
const BODY = 'no websocket here';
let g: Inproc;
let close: (() => Promise<void>) | undefined;
let origin: net.Server;
let port = 0;
t.before(async () => {
  origin = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      const head = `HTTP/1.1 403 Forbidden\r\nContent-Length: ${mode === 'full' ? BODY.length : 100}\r\n\r\n`;
      if (mode === 'full') s.end(head + BODY);
      else if (mode === 'partial') s.write(`${head}first part `);
      else if (mode === 'abort') {
        s.write(`${head}first part `);
        setTimeout(() => s.destroy(), 100);
      }
    });
  });
  ({ g, port, close } = await gatewayFor(origin));
});
t.teardown(() => close?.());

const send = (where: Where) => sendUpgrade(where, g.proxy.address.port, 'a.test', port);
/** The upgrade's line (the http event). */
const lineOf = (from: number) =>
  g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.event === 'http');

const CASES = [
  {
    name: 'an answer passed on whole',
    mode: 'full',
    act: () => undefined,
    got: /403 Forbidden[\s\S]*no websocket here$/,
    line: { decision: 'allow', reason: 'allowed', status: 403 },
    noDetail: true,
  },
  {
    name: 'an answer cut by a reload that revokes the host',
    mode: 'partial',
    act: () => g.setRules([]),
    got: /403 Forbidden[\s\S]*first part $/,
    line: { decision: 'deny', reason: 'policy-reload', status: 403, detail: /no longer allowed/ },
  },
  {
    name: 'an answer the origin aborts',
    mode: 'abort',
    act: () => undefined,
    got: /403 Forbidden[\s\S]*first part $/,
    line: { decision: 'error', reason: 'upstream-error', status: 403, detail: /in the middle of its answer/ },
  },
  {
    name: 'a client that resets before any answer',
    mode: 'none',
    act: (s: net.Socket) => s.resetAndDestroy(),
    got: /^$/,
    line: { decision: 'allow', reason: 'allowed', detail: /client closed before the upstream answered/ },
    noStatus: true,
  },
  {
    name: 'a client that resets in the middle of the answer',
    mode: 'partial',
    act: (s: net.Socket) => s.resetAndDestroy(),
    got: /403 Forbidden/,
    line: { decision: 'allow', reason: 'allowed', status: 403 },
  },
] as const;

t.test("a refused upgrade's line says how its answer ended", async (t) => {
  for (const where of ['proxy port', 'tunnel'] as const) {
    for (const c of CASES) {
      mode = c.mode;
      g.setRules([`a.test:${port}`]);
      const from = g.audit.events.length;
      const conn = await send(where);
      await sleep(150);
      c.act(conn.s);
      await sleep(300);
      const lines = lineOf(from);
      t.equal(lines.length, 1, `${where}, ${c.name}: one line`);
      t.match(lines[0], c.line, `${where}, ${c.name}: it says what happened`);
      if ('noStatus' in c) t.notOk('status' in (lines[0] ?? {}), `${where}, ${c.name}: no status (none was sent)`);
      if ('noDetail' in c) t.notOk('detail' in (lines[0] ?? {}), `${where}, ${c.name}: no detail`);
      t.match(conn.got(), c.got, `${where}, ${c.name}: what the client got`);
      conn.s.destroy();
    }
  }
  t.same(g.reports, []);
});
