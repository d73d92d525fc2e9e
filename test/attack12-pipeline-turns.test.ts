// ATTACK12 (an attack session on the ATTACK11 fix, proxy/http/pipeline.ts). Findings, each fixed:
// - F1 (medium): in a credential-injected tunnel, node:http's parser read the TLS handle itself and got
//   every record of a read in a row, past the pause of a held connection: an apt-style client (10
//   requests in flight) was cut after 6 answers (HPE_PAUSED). The parser now reads through the stream.
// - F2/F3 (low/medium): a CONNECT pipelined behind unanswered requests (or after a refusal) was opened at
//   once: its 200 landed before the earlier answer, the origin was dialled after a refusal, and a held
//   connection handed to the tunnel's HTTP server tripped an assertion (an internal error any client
//   could cause). Now it closes the connection like an upgrade does, before anything is dialled.
// - F4 (low): a connection the gateway closed for its pipeline (over the limit, an upgrade out of turn,
//   a refused head under an answer) was logged closed_by client: now request-refused.
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { SENTINEL } from '../proxy/inject/credentials.js';
import { connectTunnel, startInproc } from './harness/inproc.js';
import { startInjected } from './harness/injected.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (f: () => boolean, ms = 5000) => {
  for (let i = 0; i < ms / 20 && !f(); i++) await sleep(20);
};
/** The answers in `text`, in order: their `x-url` headers. */
const answered = (text: string) => [...text.matchAll(/x-url: (\S+)/gi)].map((m) => m[1]);

t.test('F1: an injected tunnel serves a client with 10 requests in flight, in order, one at a time at the origin', async (t) => {
  let inflight = 0;
  let most = 0;
  const g = await startInjected('sk-attack12', (req, res) => {
    most = Math.max(most, ++inflight);
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        inflight--;
        res.writeHead(200, { 'content-length': 2, 'x-url': req.url ?? '' });
        res.end('ok');
      }, 2),
    );
  });
  t.teardown(() => g.close());
  const { port, audit, reports } = g;
  const c = await g.open();
  let got = '';
  let ended = false;
  c.on('end', () => (ended = true));
  const TOTAL = 60;
  const DEPTH = 10;
  let sent = 0;
  const top = () => {
    let s = '';
    while (sent < TOTAL && sent - answered(got).length < DEPTH)
      s += `GET /n/${sent++} HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`;
    if (s) c.write(s);
  };
  c.on('data', (d: Buffer) => {
    got += d.toString('latin1');
    top();
  });
  top();
  await until(() => answered(got).length >= TOTAL || ended);
  t.same(
    answered(got),
    [...Array(TOTAL).keys()].map((i) => `/n/${i}`),
    'every answer, in order',
  );
  t.notOk(ended, 'the connection was not cut');
  t.equal(most, 1, 'one request at a time at the origin');
  t.same(
    audit.events.map(F).filter((e) => e.decision !== 'allow'),
    [],
    'no refusal',
  );
  t.same(reports, []);
  c.destroy();
});

t.test('F2/F3/F4: a CONNECT pipelined behind an unanswered request, or after a refusal, is never dialled', async (t) => {
  let dialled = 0;
  const target = net.createServer((s) => {
    dialled++;
    s.destroy();
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const tp = (target.address() as net.AddressInfo).port;
  t.teardown(() => target.close());
  const g = await startInproc({
    zone: { 'a.test': { a: ['127.0.0.1'] }, 'denied.test': { a: ['127.0.0.1'] } },
    rules: (p) => [`a.test:${p}`, `a.test:${tp}`],
  });
  t.teardown(() => g.close());
  const p = g.origin.port;
  const cases = {
    'behind an unanswered request': `GET http://a.test:${p}/x HTTP/1.0\r\nHost: a.test:${p}\r\nConnection: keep-alive\r\n\r\n`,
    'after a refused request': `GET http://denied.test:${p}/x HTTP/1.0\r\nHost: denied.test:${p}\r\nConnection: keep-alive\r\n\r\n`,
  };
  for (const [what, first] of Object.entries(cases)) {
    const from = g.audit.events.length;
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.write(first + `CONNECT a.test:${tp} HTTP/1.1\r\nHost: a.test:${tp}\r\n\r\nGET / HTTP/1.1\r\nHost: a.test:${tp}\r\n\r\n`);
    await new Promise<void>((r) => {
      s.once('close', () => r());
      setTimeout(r, 3000);
    });
    await sleep(100);
    t.equal(dialled, 0, `${what}: the CONNECT's target was never dialled`);
    t.notMatch(got, /200 Connection Established/, `${what}: no 200 for it`);
    const ls = g.audit.events.slice(from).map(F);
    t.notOk(
      ls.some((e) => e.event === 'connect' && e.decision === 'allow'),
      `${what}: no allow line for the CONNECT`,
    );
    t.match(
      ls.find((e) => e.method === 'CONNECT'),
      { decision: 'deny', reason: 'bad-request', detail: /a CONNECT to "a\.test:\d+" pipelined behind/ },
      `${what}: its line`,
    );
    s.destroy();
  }
  t.same(g.reports, [], 'no internal error');
  // The gateway's pipeline limit inside a plain-HTTP tunnel: closed_by is the gateway's reason.
  const from = g.audit.events.length;
  const tc = await connectTunnel(g.proxy.address.port, 'a.test', p);
  tc.s.write([...Array(200).keys()].map((i) => `GET /${i} HTTP/1.1\r\nHost: a.test:${p}\r\n\r\n`).join(''));
  await tc.closed;
  tc.s.destroy();
  await until(() => g.audit.events.slice(from).some((e) => e.event === 'tunnel_close'));
  t.match(
    g.audit.events
      .slice(from)
      .map(F)
      .find((e) => e.event === 'tunnel_close'),
    { closed_by: 'request-refused' },
    'a tunnel closed over the pipeline limit: closed_by request-refused',
  );
});

// ATTACK13 (a third round on the same code). Findings, each fixed:
// - F1 (medium): requests with an `Expect` the proxy refuses (417) skipped the pipeline: a connection held
//   ~1,000 of them behind one slow request (3 MB each connection), each logged 417 though one at most
//   is ever written. They now take their turn like any request (counted, held, closed past the limit).
// - F2 (medium): a held connection stops reading in the middle of a head; node:http's headers timeout
//   then cut a normal pipelining client (10 in flight, a head split across writes) and blamed it. A
//   held connection's head is not late.
// - F3 (low): a CONNECT inside a tunnel behind an unanswered request had its 400 written at once, read
//   by the client as the earlier request's answer. It now closes the connection like one on the proxy port.
// ATTACK14 (a re-attack of those): skipping that 408 ended node:http's timing of the head for good: the
// half head, trickled a byte at a time after the hold, kept the connection open without limit (no line).
// The head is now timed again from the end of the hold (pipeline.ts timeHead).
t.test(
  'ATTACK13/14: Expect refusals, a held half head (finished late, or never), and a CONNECT inside a tunnel all take their turn',
  async (t) => {
    const origin = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.end(`answer ${req.url}\n`), req.url?.includes('slow') ? 400 : 0));
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const p = (origin.address() as net.AddressInfo).port;
    t.teardown(() => {
      origin.closeAllConnections();
      origin.close();
    });
    const g = await startInproc({ zone: { 'a.test': { a: ['127.0.0.1'] } }, rules: [`a.test:${p}`], limits: { headersTimeoutMs: 300 } });
    t.teardown(() => g.close());
    const ended = (s: net.Socket, ms = 3000) =>
      new Promise<boolean>((r) => {
        s.once('end', () => r(true));
        s.once('close', () => r(true));
        setTimeout(() => r(false), ms);
      });

    // F1: one slow request, then 200 refused expectations in one write.
    for (const where of ['proxy port', 'tunnel']) {
      const from = g.audit.events.length;
      const tc = where === 'tunnel' ? await connectTunnel(g.proxy.address.port, 'a.test', p) : undefined;
      const s = tc?.s ?? net.connect(g.proxy.address.port, '127.0.0.1');
      s.on('error', () => undefined);
      const target = (path: string) => (tc ? path : `http://a.test:${p}${path}`);
      const v = tc ? '1.1' : '1.0';
      s.write(
        `GET ${target('/slow')} HTTP/${v}\r\nHost: a.test:${p}\r\nConnection: keep-alive\r\n\r\n` +
          [...Array(200).keys()].map((i) => `GET ${target(`/e${i}`)} HTTP/1.1\r\nHost: a.test:${p}\r\nExpect: x\r\n\r\n`).join(''),
      );
      t.ok(await ended(s), `${where}: the connection was closed`);
      s.destroy();
      await sleep(100);
      const ls = g.audit.events.slice(from).map(F);
      t.ok(ls.filter((e) => e.status === 417).length <= 1, `${where}: at most one 417 line (one can be written)`);
      t.ok(
        ls.some((e) => /more than \d+ requests pipelined/.test(String(e.detail))),
        `${where}: closed over the pipeline limit`,
      );
    }

    // F2: 9 slow requests hold the connection; the 10th head comes in two writes, the second after the
    // headers timeout. Every answer arrives.
    {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', p);
      const head = (i: number) => `GET /slow-${i} HTTP/1.1\r\nHost: a.test:${p}\r\n\r\n`;
      tc.s.write([...Array(9).keys()].map(head).join('') + head(9).slice(0, 12));
      await sleep(700);
      tc.s.write(head(9).slice(12));
      await until(() => (tc.data.match(/answer \/slow-/g) ?? []).length >= 10, 8000);
      t.equal((tc.data.match(/answer \/slow-/g) ?? []).length, 10, 'a held half head: every answer');
      tc.s.destroy();
    }

    // ATTACK14: the same held half head trickled a byte at a time, never finished: timed again from the
    // end of the hold (node:http stops timing a head once its timeout fired), so the connection is closed.
    {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', p);
      const from = g.audit.events.length;
      const head = (i: number) => `GET /slow-${i} HTTP/1.1\r\nHost: a.test:${p}\r\n\r\n`;
      tc.s.write([...Array(9).keys()].map(head).join('') + `GET /x HTTP/1.1\r\nHost: a.test:${p}\r\nX-Slow: `);
      let gone = false;
      void tc.closed.then(() => (gone = true));
      for (let i = 0; i < 80 && !gone; i++) {
        await sleep(150);
        if (!gone) tc.s.write('a');
      }
      t.ok(gone, 'an unfinished head trickled after the hold: the connection was closed');
      t.ok(
        g.audit.events.slice(from).some((e) => F(e).detail === 'ERR_HTTP_REQUEST_TIMEOUT'),
        'its line: the headers timeout',
      );
      tc.s.destroy();
    }

    // F3: a CONNECT inside a tunnel, behind an unanswered request.
    {
      const tc = await connectTunnel(g.proxy.address.port, 'a.test', p);
      tc.s.write(`GET /slow HTTP/1.1\r\nHost: a.test:${p}\r\n\r\nCONNECT a.test:${p} HTTP/1.1\r\nHost: a.test:${p}\r\n\r\n`);
      await tc.closed;
      t.notMatch(tc.data, /HTTP\/1\.1 400/, 'no 400 read as the earlier answer');
      tc.s.destroy();
    }
    t.same(g.reports, [], 'no internal error');
  },
);
