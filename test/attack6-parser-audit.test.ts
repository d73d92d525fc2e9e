// ATTACK6 (against the proxy's request-head parsing, as a hostile client).
// Finding 1 (low, availability): the CONNECT fast path (proxy/http/connect-head.ts, front.ts) re-read the
// whole head at every read, so a head trickled in small reads cost the square of its length on the
// gateway's one event loop (1.2 s of CPU for one 16 KiB head sent byte by byte, 16 s at 64 KiB, and the
// headers timeout runs on a clock that CPU does not stop); now a few reads (FAST_PATH_READS), then
// http.Server's incremental parser.
// Finding 2 (low, audit): a head refused by Node's parser (400 HPE_*, 431) or by the headers timeout (408)
// was answered with no audit line; now each one writes one (reason bad-request, the parser's code), inside
// a plain-HTTP tunnel naming the tunnel's host.
// Held: a slowloris is cut at the headers deadline and audited; a head trickled byte by byte is read exactly;
// whatever the fast reader accepts, llhttp reads as the same CONNECT (same target, same bytes after).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { readConnectHead } from '../proxy/http/head.js';
import type { AuditEvent } from '../proxy/audit.js';
import { startInproc, type Inproc } from './harness/inproc.js';

let g: Inproc;
let big: Inproc;
const MAX = 16 * 1024;
const BIG = 128 * 1024;
const world = (headersTimeoutMs: number, maxHeaderBytes: number) =>
  startInproc({
    zone: { 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => ['allowed.test', `allowed.test:${p}`],
    limits: { headersTimeoutMs, maxHeaderBytes },
  });
t.before(async () => {
  g = await world(1_500, MAX);
  big = await world(30_000, BIG);
});
t.teardown(async () => {
  await g?.close();
  await big?.close();
});

/** Send `parts` (each after a macrotask), read until close or `waitMs`; the reply and the audit lines meanwhile. */
async function exchange(parts: Buffer[], waitMs = 3_000, gw = g, gapMs = 0): Promise<{ reply: string; audit: AuditEvent[] }> {
  const g = gw;
  const before = g.audit.events.length;
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    s.setNoDelay(true);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) break;
        s.write(p);
        if (parts.length > 1) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    setTimeout(() => s.destroy(), waitMs).unref();
  });
  await new Promise((r) => setTimeout(r, 50));
  return { reply, audit: g.audit.events.slice(before) };
}

t.test('finding 2: every parser refusal writes its audit line', async (t) => {
  const p = g.origin.port;
  const table: Array<[string, string, number, RegExp]> = [
    ['non-ASCII in the target', `CONNECT allowed\xe9.test:${p} HTTP/1.1\r\n\r\n`, 400, /^HPE_/],
    ['lowercase method', `connect allowed.test:${p} HTTP/1.1\r\n\r\n`, 400, /^HPE_INVALID_METHOD$/],
    ['NUL in a header', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\0b\r\n\r\n`, 400, /^HPE_/],
    ['bare LF', `CONNECT allowed.test:${p} HTTP/1.1\n\n`, 400, /^HPE_/],
    ['over the header limit', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: ${'a'.repeat(MAX + 10)}\r\n\r\n`, 431, /^HPE_HEADER_OVERFLOW$/],
    ['an unfinished head (headers timeout)', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\r\n`, 408, /^ERR_HTTP_REQUEST_TIMEOUT$/],
  ];
  for (const [what, bytes, status, code] of table) {
    const x = await exchange([Buffer.from(bytes, 'latin1')]);
    t.match(x.reply, new RegExp(`^HTTP/1\\.1 ${status} `), `${what}: answered ${status}`);
    const lines = x.audit.filter((e) => e.event === 'http' || e.event === 'connect');
    t.equal(lines.length, 1, `${what}: one audit line`);
    t.match(lines[0], { decision: 'deny', reason: 'bad-request', status, client: '127.0.0.1', detail: code }, what);
  }
  // inside a plain-HTTP tunnel: the line names the tunnel's host
  const x = await exchange([
    Buffer.from(`CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: allowed.test:${p}\r\nX: a\0b\r\n\r\n`, 'latin1'),
  ]);
  t.match(x.reply, /\r\n\r\nHTTP\/1\.1 400 /, 'a bad request inside a tunnel: 400');
  t.match(
    x.audit.filter((e) => e.event === 'http'),
    [{ decision: 'deny', reason: 'bad-request', status: 400, host: 'allowed.test', port: p, ip: '127.0.0.1' }],
    'audited as the tunnel host',
  );
});

t.test('held: a slowloris (one byte per read) is cut at the headers deadline and audited', async (t) => {
  const bytes = Buffer.from(`CONNECT allowed.test:${g.origin.port} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`, 'latin1');
  const t0 = Date.now();
  const x = await exchange(
    [...bytes].map((b) => Buffer.from([b])),
    4_000,
    g,
    250,
  );
  const ms = Date.now() - t0;
  t.match(x.reply, /^HTTP\/1\.1 408 /, 'answered 408');
  t.ok(ms < 1_500 + 700, `within the headers timeout (${ms} ms)`);
  t.match(
    x.audit.filter((e) => e.event === 'http' || e.event === 'connect'),
    [{ decision: 'deny', reason: 'bad-request', status: 408 }],
    'one audit line, nothing admitted',
  );
});

t.test('held: a request or CONNECT trickled byte by byte is read exactly', async (t) => {
  const p = g.origin.port;
  const req = `GET http://allowed.test:${p}/trickled HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`;
  const x = await exchange(
    [...Buffer.from(req, 'latin1')].map((b) => Buffer.from([b])),
    3_000,
    g,
    2,
  );
  t.match(x.reply, new RegExp(`^HTTP/1\\.1 200 OK[^]*hello allowed.test:${p} /trickled`));
  const c = `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET /in HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`;
  const y = await exchange(
    [...Buffer.from(c, 'latin1')].map((b) => Buffer.from([b])),
    3_000,
    g,
    2,
  );
  t.match(y.reply, new RegExp(`^HTTP/1\\.1 200 Connection Established[^]*hello allowed.test:${p} /in`), 'a CONNECT trickled: tunnel');
});

t.test('finding 1: a head trickled in many reads is not re-read whole at each one', async (t) => {
  const p = big.origin.port;
  const head = Buffer.from(`CONNECT allowed.test:${p} HTTP/1.1\r\nX: ${'a'.repeat(64_000)}\r\n\r\n`, 'latin1');
  const parts: Buffer[] = [];
  for (let i = 0; i < head.length; i += 1000) parts.push(head.subarray(i, i + 1000));
  // What the gateway copies to put the reads together (Buffer.concat, counted in this process): before,
  // the fast path joined and re-scanned everything received at every read, the square of the length.
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = ((list: readonly Uint8Array[], n?: number) => {
    const out = concat(list, n);
    copied += out.length;
    return out;
  }) as typeof Buffer.concat;
  let x;
  try {
    x = await exchange(parts, 10_000, big, 15);
  } finally {
    Buffer.concat = concat;
  }
  t.match(x.reply, /^HTTP\/1\.1 200 Connection Established/, 'the tunnel still opens (through http.Server)');
  t.ok(copied < 200_000, `bytes copied for a ${head.length}-byte head in ${parts.length} reads: ${copied}`);
});

t.test('held: whatever the fast reader takes for a CONNECT, llhttp reads as the same CONNECT', async (t) => {
  const server = http.createServer({ maxHeaderSize: 2048 });
  server.maxHeadersCount = 0;
  let pending: ((v: string) => void) | undefined;
  server.on('connect', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    pending?.(`connect ${req.url} ${JSON.stringify(head.toString('latin1'))}`);
    sock.destroy();
  });
  server.on('request', (_req, res: http.ServerResponse) => (pending?.('request'), res.destroy()));
  server.on('clientError', (err: NodeJS.ErrnoException, sock: net.Socket) => (pending?.(`error ${err.code}`), sock.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const llhttp = (b: Buffer) =>
    new Promise<string>((resolve) => {
      pending = resolve;
      const s = net.connect(port, '127.0.0.1', () => s.write(b));
      s.on('error', () => undefined);
      setTimeout(() => (resolve('timeout'), s.destroy()), 500).unref();
    });
  const base = 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nX-Y: v w\r\n\r\nREST';
  const alpha = ['\r', '\n', ' ', '\t', '\0', '\x80', '\xff', ':', 'A', '[', ']', '_', '\x7f', '\x0b', 'Content-Length: 1\r\n']
    .concat(['Transfer-Encoding: chunked\r\n', 'Upgrade: websocket\r\n', 'Connection: close\r\n', 'Expect: 100-continue\r\n'])
    .concat(['content-length\r\n', 'Host: a\r\nHost: b\r\n', 'Content-Length: 0\r\nContent-Length: 0\r\n', 'HTTP/1.0']);
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 48271) % 2147483647), seed % n);
  let tried = 0;
  let differ = 0;
  for (let k = 0; k < 3000 && tried < 400; k++) {
    let s = base;
    for (let e = 1 + rnd(3); e > 0; e--) {
      const at = rnd(s.length + 1);
      const ins = alpha[rnd(alpha.length)]!;
      const op = rnd(3);
      s = s.slice(0, at) + (op === 1 ? '' : ins) + s.slice(op === 0 ? at : at + 1);
    }
    const b = Buffer.from(s, 'latin1');
    const r = readConnectHead(b, 2048);
    if (r.kind !== 'connect') continue;
    tried++;
    const got = await llhttp(b);
    const want = `connect ${r.authority} ${JSON.stringify(r.rest.toString('latin1'))}`;
    if (got !== want) {
      t.equal(got, want, `differs: ${JSON.stringify(s)}`);
      differ++;
    }
  }
  t.ok(tried > 100, `${tried} mutated heads the fast reader accepts`);
  t.equal(differ, 0, 'llhttp reads each one the same');
});
