// ATTACK7 (the proxy port's front door, proxy/http/front.ts, as a hostile client): each stage of a connection.
// Finding (low): a request Node answers itself (`Expect:` other than 100-continue, 417) never reached a
// handler, so the first-moment headers deadline stayed armed and later cut the idle keep-alive connection
// with a 408 and a deny line. Now the proxy answers the expectation itself (audited 417) and stops the deadline.
// Finding (low, from before the front door): refusals with no audit line: Node's own 400 for a request with
// no Host, its 417, the 400 for a CONNECT inside a tunnel, the 400 for an origin-form request. Each writes
// one deny line now. Held: the per-client limit with connections parked at every stage; resets at every
// stage leave no registry entry, slot or timer; odd CONNECT targets get the same answer and audit line on
// the front door and through http.Server; heads around maxHeaderBytes; keep-alive then CONNECT; 300
// pipelined requests in a tunnel with a client that does not read.
import net from 'node:net';
import t, { type Test } from 'tap';
import type { AuditEvent } from '../proxy/audit.js';

/** An audit event's fields, whatever its kind. */
const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
import { startInproc, type Inproc } from './harness/inproc.js';

let g: Inproc;
const HEADERS_TIMEOUT = 1_000;
const LIMIT = 12;
const MAX = 2048;
t.before(async () => {
  g = await startInproc({
    zone: { 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => ['allowed.test', `allowed.test:${p}`],
    limits: { headersTimeoutMs: HEADERS_TIMEOUT, maxHeaderBytes: MAX, maxConnectionsPerClient: LIMIT },
  });
});
t.teardown(() => g?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const open = () =>
  new Promise<net.Socket>((resolve) => {
    const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.setNoDelay(true);
    s.on('error', () => undefined);
  });
const collect = (s: net.Socket) => {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return () => Buffer.concat(chunks).toString('latin1');
};
const closed = (s: net.Socket, ms = 3000) =>
  new Promise<boolean>((r) => {
    if (s.destroyed) return r(true);
    s.once('close', () => r(true));
    setTimeout(() => r(false), ms);
  });

/** Open LIMIT connections that stay; the next one must be the 429. */
async function limitHolds(t: Test, what: string): Promise<void> {
  const extra = await open();
  const got = collect(extra);
  await closed(extra);
  t.match(got(), /^HTTP\/1\.1 429 /, `${what}: over the limit: 429`);
}

t.test('per-client limit holds with connections parked at each stage', async (t) => {
  const p = g.origin.port;
  const stages: Array<[string, string[]]> = [
    ['nothing sent', []],
    ['partial clean CONNECT head (fast path)', ['CONNECT allowed.test:']],
    ['partial other head (handed over)', ['GET http://allowed.test/ HTTP/1.1\r\n']],
    ['more than FAST_PATH_READS reads (handed over)', ['CON', 'NE', 'CT ', 'all', 'owed']],
    ['established tunnel', [`CONNECT allowed.test:${p} HTTP/1.1\r\n\r\n`]],
  ];
  for (const [what, parts] of stages) {
    const socks: net.Socket[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const s = await open();
      for (const b of parts) {
        s.write(b);
        await sleep(3);
      }
      socks.push(s);
    }
    await sleep(50);
    const before = g.audit.events.length;
    await limitHolds(t, what);
    t.match(
      g.audit.events.slice(before).filter((e) => F(e).decision === 'deny'),
      [{ reason: 'connection-limit', status: 429 }],
      `${what}: audited`,
    );
    for (const s of socks) s.resetAndDestroy();
    await sleep(100);
  }
});

t.test('resets at every stage: no internal error, no slot leaked, no timer left', async (t) => {
  const p = g.origin.port;
  const timers = () => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
  await sleep(200);
  const t0 = timers();
  const head = `CONNECT allowed.test:${p} HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`;
  const plans: Array<[string, string[], number]> = [
    ['reset at once', [], 0],
    ['reset after a partial fast-path head', ['CONNECT allo'], 0],
    ['reset right after a clean head (during admit)', [head], 0],
    ['reset right after a clean head (after established)', [head], 30],
    ['reset after a hand-over (read cap)', ['C', 'O', 'N', 'N', 'E'], 0],
    ['reset after an other head', ['GET http://allowed.test/ HTTP/1.1\r\n'], 0],
    ['reset after a plain request', [`GET http://allowed.test:${p}/x HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`], 0],
    ['reset after the deadline fired', ['CONNECT allo'], HEADERS_TIMEOUT + 200],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [, parts, wait] of plans) {
      const s = await open();
      for (const b of parts) {
        s.write(b);
        await sleep(2);
      }
      if (wait) await sleep(wait);
      s.resetAndDestroy();
    }
  }
  await sleep(300);
  t.same(g.reports, [], 'no internal error reported');
  t.same(g.proxy.connections(), [], 'no connection left in the registry');
  // every slot came back: LIMIT connections fit again
  const socks: net.Socket[] = [];
  for (let i = 0; i < LIMIT; i++) socks.push(await open());
  await sleep(50);
  t.ok(
    socks.every((s) => !s.destroyed),
    'LIMIT connections fit again',
  );
  await limitHolds(t, 'after the resets');
  for (const s of socks) s.resetAndDestroy();
  await sleep(5_500); // lingers (LINGER_MS) end
  t.ok(timers() <= t0, `timers back to ${t0} (${timers()})`);
});

t.test('odd CONNECT heads: same answers on the fast path and through http.Server', async (t) => {
  const p = g.origin.port;
  const ask = async (parts: string[]): Promise<{ reply: string; audit: AuditEvent[] }> => {
    const before = g.audit.events.length;
    const s = await open();
    const got = collect(s);
    for (const b of parts) {
      s.write(Buffer.from(b, 'latin1'));
      await sleep(3);
    }
    await sleep(150);
    s.resetAndDestroy();
    await sleep(30);
    return { reply: got(), audit: g.audit.events.slice(before) };
  };
  const five = (h: string) => [...Array(5)].map((_, i) => h.slice((i * h.length) / 5, ((i + 1) * h.length) / 5));
  const long = 'a'.repeat(MAX - 60);
  const heads: Array<[string, string]> = [
    ['IPv6 loopback', `CONNECT [::1]:${p} HTTP/1.1\r\n\r\n`],
    ['IPv4-mapped', `CONNECT [::ffff:127.0.0.1]:${p} HTTP/1.1\r\n\r\n`],
    ['IPv4 literal', `CONNECT 127.0.0.1:${p} HTTP/1.1\r\n\r\n`],
    ['bracketed name', `CONNECT [allowed.test]:${p} HTTP/1.1\r\n\r\n`],
    ['trailing dot', `CONNECT allowed.test.:${p} HTTP/1.1\r\n\r\n`],
    ['uppercase', `CONNECT ALLOWED.TEST:${p} HTTP/1.1\r\n\r\n`],
    ['port 0', `CONNECT allowed.test:0 HTTP/1.1\r\n\r\n`],
    ['port leading zeros', `CONNECT allowed.test:0${p} HTTP/1.1\r\n\r\n`],
    ['port 65536', `CONNECT allowed.test:65536 HTTP/1.1\r\n\r\n`],
    ['empty port', `CONNECT allowed.test: HTTP/1.1\r\n\r\n`],
    ['two colons', `CONNECT allowed.test::${p} HTTP/1.1\r\n\r\n`],
    ['very long authority', `CONNECT ${long}.test:${p} HTTP/1.1\r\n\r\n`],
    [
      'Expect/Upgrade/dup Host',
      `CONNECT allowed.test:${p} HTTP/1.1\r\nHost: evil.test\r\nHost: allowed.test\r\nExpect: 100-continue\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
    ],
    ['HTTP/1.0', `CONNECT allowed.test:${p} HTTP/1.0\r\n\r\n`],
    ['underscore name', `CONNECT _a_.test:${p} HTTP/1.1\r\n\r\n`],
  ];
  for (const [what, h] of heads) {
    const a = await ask([h]);
    const b = await ask(five(h));
    const status = (x: { reply: string }) => x.reply.split('\r\n')[0] ?? '';
    const lines = (x: { audit: AuditEvent[] }) =>
      x.audit
        .filter((e) => e.event === 'connect')
        .map((e) => {
          const f = F(e);
          return `${String(f.decision)} ${String(f.reason)} ${String(f.status)} ${String(f.host)}:${String(f.port)}`;
        });
    t.equal(status(a), status(b), `${what}: same status (${status(a)})`);
    t.same(lines(a), lines(b), `${what}: same audit (${lines(a).join(';')})`);
    if (!/^HTTP\/1\.1 200 /.test(status(a)))
      t.ok(
        a.audit.some((e) => F(e).decision === 'deny' || F(e).decision === 'error'),
        `${what}: refusal audited`,
      );
  }
});

t.test('a head of exactly maxHeaderBytes, and one byte over', async (t) => {
  const p = g.origin.port;
  const base = `CONNECT allowed.test:${p} HTTP/1.1\r\nX: \r\n\r\n`;
  const h = (n: number) => `CONNECT allowed.test:${p} HTTP/1.1\r\nX: ${'a'.repeat(n - base.length)}\r\n\r\n`;
  for (const n of [MAX - 1, MAX, MAX + 1, MAX + 40]) {
    const s = await open();
    const got = collect(s);
    s.write(h(n) + 'TUNNEL');
    await sleep(200);
    s.resetAndDestroy();
    t.match(got(), /^HTTP\/1\.1 (200|400|431) /, `${n}: ${got().split('\r\n')[0]}`);
  }
});

t.test('keep-alive: plain requests first, then CONNECT on the same connection', async (t) => {
  const p = g.origin.port;
  const s = await open();
  const got = collect(s);
  s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
  await sleep(100);
  s.write(`GET http://allowed.test:${p}/ka HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`);
  await sleep(100);
  s.write(`CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET /in HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`);
  await sleep(300);
  s.resetAndDestroy();
  const r = got();
  t.comment(JSON.stringify(r));
  t.match(
    r,
    /^HTTP\/1\.1 200 OK[^]*"inproc":true[^]*HTTP\/1\.1 200 OK[^]*hello allowed.test:\d+ \/ka[^]*HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK[^]*hello allowed.test:\d+ \/in/,
  );
  // and a denied CONNECT after a keep-alive request is refused and audited
  const before = g.audit.events.length;
  const s2 = await open();
  const got2 = collect(s2);
  s2.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
  await sleep(100);
  s2.write(`CONNECT denied.test:443 HTTP/1.1\r\n\r\n`);
  await closed(s2, 1500);
  t.match(got2(), /HTTP\/1\.1 403 /);
  t.match(
    g.audit.events.slice(before).filter((e) => e.event === 'connect'),
    [{ event: 'connect', host: 'denied.test', decision: 'deny', status: 403 }],
  );
  // pipelined behind the keep-alive request (in the same write), it closes the connection (ATTACK12):
  // its answer would have been written before the request's
  const before3 = g.audit.events.length;
  const s3 = await open();
  s3.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nCONNECT denied.test:443 HTTP/1.1\r\n\r\n`);
  const ended = await new Promise<boolean>((r) => {
    s3.once('end', () => r(true));
    s3.once('close', () => r(true));
    setTimeout(() => r(false), 1500);
  });
  t.ok(ended, 'the gateway ended the connection');
  s3.destroy();
  t.match(
    g.audit.events.slice(before3).map((e) => e as unknown as Record<string, unknown>),
    [
      {
        event: 'http',
        method: 'CONNECT',
        decision: 'deny',
        reason: 'bad-request',
        detail: /a CONNECT to "denied\.test:443" pipelined behind/,
      },
    ],
  );
});

t.test(
  'an expectation the proxy refuses (417) stops the first-moment deadline: no 408, no headers-timeout line after a complete request',
  async (t) => {
    const p = g.origin.port;
    const before = g.audit.events.length;
    const s = await open();
    const got = collect(s);
    s.write(`GET http://allowed.test:${p}/e HTTP/1.1\r\nHost: allowed.test:${p}\r\nExpect: nope\r\n\r\n`);
    await sleep(HEADERS_TIMEOUT + 1_000); // under keepAliveTimeout (5 s)
    s.resetAndDestroy();
    t.match(got(), /^HTTP\/1\.1 417 /, 'answered 417');
    t.notMatch(got(), /408 Request Timeout/, 'no 408 after a complete request was read');
    t.same(
      g.audit.events.slice(before).filter((e) => F(e).status === 408),
      [],
      'no headers-timeout deny line for a client that sent a complete request',
    );
  },
);

t.test('plain HTTP inside a fast-path tunnel: many pipelined requests, client not reading (backpressure), order kept', async (t) => {
  const p = g.origin.port;
  const N = 300;
  const pad = 'p'.repeat(1500);
  const reqs = [...Array(N)].map((_, i) => `GET /r${i}-${pad} HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`);
  for (const how of ['one write', 'head, then requests while admitting', 'head in 5 writes (hand-over)']) {
    const s = await open();
    const chunks: Buffer[] = [];
    s.pause();
    const h = `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\n`;
    if (how === 'one write') s.write(h + reqs.join(''));
    else if (how.startsWith('head, then')) {
      s.write(h);
      for (let i = 0; i < N; i += 10) s.write(reqs.slice(i, i + 10).join(''));
    } else {
      for (let i = 0; i < 5; i++) {
        s.write(h.slice((i * h.length) / 5, ((i + 1) * h.length) / 5));
        await sleep(3);
      }
      s.write(reqs.join(''));
    }
    await sleep(800);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.resume();
    const want = N;
    const deadline = Date.now() + 8000;
    let body = '';
    while (Date.now() < deadline) {
      body = Buffer.concat(chunks).toString('latin1');
      if ((body.match(/hello allowed/g) ?? []).length >= want) break;
      await sleep(100);
    }
    s.resetAndDestroy();
    const got = [...body.matchAll(/hello allowed\.test:\d+ \/r(\d+)-/g)].map((m) => Number(m[1]));
    t.same(got, [...Array(N).keys()], `${how}: ${got.length} responses, in order`);
  }
  t.same(g.reports, [], 'no internal error');
});

t.test('refusals Node used to answer itself, and a CONNECT inside a tunnel, write one deny line each', async (t) => {
  const p = g.origin.port;
  const cases: Array<[string, string, RegExp, Record<string, unknown>]> = [
    [
      'CONNECT inside a tunnel',
      `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nCONNECT denied.test:443 HTTP/1.1\r\n\r\n`,
      /^HTTP\/1\.1 200 [^]*\r\n\r\nHTTP\/1\.1 400 /,
      { event: 'http', reason: 'bad-request', status: 400, host: 'allowed.test', port: p, method: 'CONNECT' },
    ],
    [
      'no Host (HTTP/1.1)',
      `GET http://allowed.test:${p}/nohost HTTP/1.1\r\n\r\n`,
      /^HTTP\/1\.1 400 /,
      { event: 'http', reason: 'bad-request', status: 400, detail: 'exactly one Host header is required' },
    ],
    [
      'no Host inside a tunnel',
      `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET /nohost HTTP/1.1\r\n\r\n`,
      /^HTTP\/1\.1 200 [^]*\r\n\r\nHTTP\/1\.1 400 /,
      { event: 'http', reason: 'bad-request', status: 400, host: 'allowed.test', detail: 'exactly one Host header is required' },
    ],
    [
      'Expect: nope',
      `GET http://allowed.test:${p}/e HTTP/1.1\r\nHost: allowed.test:${p}\r\nExpect: nope\r\n\r\n`,
      /^HTTP\/1\.1 417 [^]*x-codex-egress-deny: bad-request/,
      { event: 'http', reason: 'bad-request', status: 417, method: 'GET' },
    ],
    [
      'Expect: nope inside a tunnel',
      `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET /e HTTP/1.1\r\nHost: allowed.test:${p}\r\nExpect: nope\r\n\r\n`,
      /^HTTP\/1\.1 200 [^]*\r\n\r\nHTTP\/1\.1 417 /,
      { event: 'http', reason: 'bad-request', status: 417, host: 'allowed.test' },
    ],
    [
      'origin form',
      'GET /other HTTP/1.1\r\nHost: x\r\n\r\n',
      /^HTTP\/1\.1 400 /,
      { event: 'http', reason: 'bad-request', status: 400, method: 'GET' },
    ],
    ['PRI preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', /^HTTP\/1\.1 400 /, { event: 'http', reason: 'bad-request', status: 400 }],
  ];
  for (const [what, b, reply, line] of cases) {
    const before = g.audit.events.length;
    const s = await open();
    const got = collect(s);
    s.write(b);
    await sleep(300);
    s.resetAndDestroy();
    await sleep(30);
    t.match(got(), reply, `${what}: answered`);
    const denies = g.audit.events.slice(before).filter((e) => F(e).decision === 'deny');
    t.equal(denies.length, 1, `${what}: one deny line (${JSON.stringify(denies)})`);
    t.match(denies[0], line, `${what}: the line`);
  }
  const h = await open();
  const got = collect(h);
  h.write('GET /healthz HTTP/1.1\r\n\r\n');
  await sleep(200);
  h.resetAndDestroy();
  t.match(got(), /^HTTP\/1\.1 200 /, '/healthz needs no Host');
});
