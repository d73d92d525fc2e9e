// The CONNECT fast path (proxy/http/connect-head.ts, proxy.ts's listener): a table of heads and what the
// reader makes of them (in process, no sockets), then the same heads through the real proxy: a clean
// CONNECT head opens the tunnel; everything else gets http.Server's answer as before; the bytes after
// the head are tunnel data, never a second request; the headers timeout holds across a hand-over.
import net from 'node:net';
import t from 'tap';
import { readConnectHead, type ConnectRead as HeadRead } from '../proxy/http/head.js';
import type { AuditEvent } from '../proxy/audit.js';
import { startInproc, type Inproc } from './harness/inproc.js';

const MAX = 1024;
const CLEAN = 'CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nUser-Agent: curl/8.5.0\r\n\r\n';
const read = (s: string | Buffer, max = MAX): HeadRead => readConnectHead(Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'), max);

t.test('readConnectHead: clean CONNECT heads, and the bytes after them', async (t) => {
  const table: Array<[string, string, string]> = [
    [CLEAN, 'allowed.test:443', ''],
    ['CONNECT allowed.test:443 HTTP/1.0\r\n\r\n', 'allowed.test:443', ''],
    ['CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n', '[2001:db8::1]:443', ''],
    ['CONNECT a_b.test:8443 HTTP/1.1\r\nX-Tab:\ta\tb \r\nEmpty:\r\n\r\n', 'a_b.test:8443', ''],
    // whatever the parser of the target makes of it: a missing port is parseAuthority's 400, with its audit line
    ['CONNECT allowed.test HTTP/1.1\r\n\r\n', 'allowed.test', ''],
    // bytes after the head are the tunnel's, whatever they look like
    [`${CLEAN}\x16\x03\x01\x02\x00`, 'allowed.test:443', '\x16\x03\x01\x02\x00'],
    [`${CLEAN}GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n`, 'allowed.test:443', 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n'],
    [`${CLEAN}CONNECT evil.test:443 HTTP/1.1\r\n\r\n`, 'allowed.test:443', 'CONNECT evil.test:443 HTTP/1.1\r\n\r\n'],
  ];
  for (const [head, authority, rest] of table) {
    const r = read(head);
    t.equal(r.kind, 'connect', JSON.stringify(head));
    if (r.kind !== 'connect') continue;
    t.equal(r.authority, authority, `${JSON.stringify(head)}: authority`);
    t.equal(r.rest.toString('latin1'), rest, `${JSON.stringify(head)}: the bytes after the head`);
  }
});

t.test('readConnectHead: every prefix of a clean head waits for more; byte by byte gives the same answer', async (t) => {
  const bytes = Buffer.from(`${CLEAN}`, 'latin1');
  let early = 0;
  for (let n = 0; n < bytes.length; n++) if (read(bytes.subarray(0, n)).kind !== 'need-more') early++;
  t.equal(early, 0, 'no proper prefix is decided');
  t.equal(read(bytes).kind, 'connect');
});

t.test('readConnectHead: anything not clearly a CONNECT head goes to http.Server', async (t) => {
  const other: Array<[string, string]> = [
    ['lowercase method', 'connect allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['mixed-case method', 'Connect allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['another method', 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n'],
    ['origin form', 'GET /healthz HTTP/1.1\r\n\r\n'],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['leading empty line', '\r\nCONNECT allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['two spaces before the target', 'CONNECT  allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['two spaces after the target', 'CONNECT allowed.test:443  HTTP/1.1\r\n\r\n'],
    ['tab instead of a space', 'CONNECT\tallowed.test:443 HTTP/1.1\r\n\r\n'],
    ['tab after the target', 'CONNECT allowed.test:443\tHTTP/1.1\r\n\r\n'],
    ['space at the end of the request line', 'CONNECT allowed.test:443 HTTP/1.1 \r\n\r\n'],
    ['bare LF after the request line', 'CONNECT allowed.test:443 HTTP/1.1\n\r\n'],
    ['bare LF after a header', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost: a\n\r\n'],
    ['bare LF ending the head', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost: a\r\n\n'],
    ['bare CR in a header', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost: a\rb\r\n\r\n'],
    ['CR then not LF ending the head', 'CONNECT allowed.test:443 HTTP/1.1\r\n\rX'],
    ['missing version', 'CONNECT allowed.test:443\r\n\r\n'],
    ['HTTP/2.0', 'CONNECT allowed.test:443 HTTP/2.0\r\n\r\n'],
    ['HTTP/1.2', 'CONNECT allowed.test:443 HTTP/1.2\r\n\r\n'],
    ['HTTP/0.9', 'CONNECT allowed.test:443 HTTP/0.9\r\n\r\n'],
    ['lowercase version', 'CONNECT allowed.test:443 http/1.1\r\n\r\n'],
    ['absolute URL', 'CONNECT http://allowed.test:443/ HTTP/1.1\r\n\r\n'],
    ['userinfo', 'CONNECT user@allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['percent-encoding', 'CONNECT allowed%2etest:443 HTTP/1.1\r\n\r\n'],
    ['asterisk', 'CONNECT * HTTP/1.1\r\n\r\n'],
    ['empty target', 'CONNECT  HTTP/1.1\r\n\r\n'],
    ['NUL in the target', 'CONNECT allowed.test\0:443 HTTP/1.1\r\n\r\n'],
    ['non-ASCII in the target', 'CONNECT allowed\xe9.test:443 HTTP/1.1\r\n\r\n'],
    ['NUL in a header value', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\0b\r\n\r\n'],
    ['control byte in a header value', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\x01b\r\n\r\n'],
    ['DEL in a header value', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\x7fb\r\n\r\n'],
    ['obs-text in a header value', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\xe9b\r\n\r\n'],
    ['obs-fold', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\r\n b\r\n\r\n'],
    ['obs-fold with a tab', 'CONNECT allowed.test:443 HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n'],
    ['space before the colon', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['tab before the colon', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost\t: a\r\n\r\n'],
    ['empty header name', 'CONNECT allowed.test:443 HTTP/1.1\r\n: a\r\n\r\n'],
    ['no colon', 'CONNECT allowed.test:443 HTTP/1.1\r\nHost\r\n\r\n'],
    ['non-token header name', 'CONNECT allowed.test:443 HTTP/1.1\r\nHo(st: a\r\n\r\n'],
    ['Content-Length', 'CONNECT allowed.test:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello'],
    ['Transfer-Encoding', 'CONNECT allowed.test:443 HTTP/1.1\r\ntransfer-ENCODING: chunked\r\n\r\n0\r\n\r\n'],
    ['garbage', '\x00\x01GARBAGE\r\n\r\n'],
    ['TLS ClientHello', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'],
  ];
  for (const [what, head] of other) t.equal(read(head).kind, 'other', what);
  // Also when that byte is the last one received so far: no waiting for more once it is wrong.
  t.equal(read('CONNECT allowed.test:443 HTTP/1.1\r\nHost ').kind, 'other', 'decided at the wrong byte');
  t.equal(read('CONNECT allowed.test:443 HTTP/1.1\n').kind, 'other', 'decided at a bare LF');
});

t.test('readConnectHead: the head is bounded by maxHeaderBytes (http.Server then answers 431 as before)', async (t) => {
  const head = (n: number) => `CONNECT allowed.test:443 HTTP/1.1\r\nX: ${'a'.repeat(n)}\r\n\r\n`;
  const fits = head(100);
  t.equal(read(fits, fits.length).kind, 'connect', 'a head of exactly the limit');
  t.equal(read(fits, fits.length - 1).kind, 'other', 'one byte over it');
  const partial = Buffer.from(head(100)).subarray(0, 80);
  t.equal(read(partial, 200).kind, 'need-more', 'an incomplete head under the limit waits');
  t.equal(read(partial, 80).kind, 'other', 'an incomplete head that reached the limit does not');
});

// ---- through the proxy ---------------------------------------------------------------------------------

let g: Inproc;
const HEADERS_TIMEOUT = 1_000;
t.before(async () => {
  g = await startInproc({
    zone: { 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => ['allowed.test', `allowed.test:${p}`],
    limits: { headersTimeoutMs: HEADERS_TIMEOUT, maxHeaderBytes: 2048 },
  });
});
t.teardown(() => g?.close());

interface Exchange {
  reply: string;
  ms: number;
  audit: AuditEvent[];
}

/** Send `parts` (each after `gapMs`), read until the proxy closes or `waitMs`; the audit lines written meanwhile. */
async function exchange(parts: Array<string | Buffer>, opts: { gapMs?: number; waitMs?: number; end?: boolean } = {}): Promise<Exchange> {
  const before = g.audit.events.length;
  const r = await new Promise<{ reply: string; ms: number }>((resolve) => {
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const t0 = Date.now();
    const done = () => resolve({ reply: Buffer.concat(chunks).toString('latin1'), ms: Date.now() - t0 });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', done);
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) break;
        s.write(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
        if (opts.gapMs) await new Promise((r2) => setTimeout(r2, opts.gapMs));
      }
      if (opts.end) s.end();
    });
    setTimeout(() => s.destroy(), opts.waitMs ?? 1_500);
  });
  await new Promise((r2) => setTimeout(r2, 50));
  return { ...r, audit: g.audit.events.slice(before) };
}

const statusLine = (x: Exchange) => x.reply.split('\r\n')[0];

t.test('a clean CONNECT head opens the tunnel, in one write or byte by byte', async (t) => {
  const p = g.origin.port;
  const head = `CONNECT allowed.test:${p} HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`;
  const get = `GET /in HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`;
  for (const [what, parts] of [
    ['one write', [head + get]],
    ['byte by byte', [...Buffer.from(head + get)].map((b) => Buffer.from([b]))],
  ] as const) {
    const x = await exchange(parts as Array<string | Buffer>, { gapMs: what === 'one write' ? 0 : 1 });
    t.equal(statusLine(x), 'HTTP/1.1 200 Connection Established', what);
    t.match(x.reply, new RegExp(`hello allowed.test:${p} /in`), `${what}: the request after the head went through the tunnel`);
    t.match(x.audit[0], { event: 'connect', decision: 'allow', host: 'allowed.test', port: p }, `${what}: audited`);
    t.ok(
      x.audit.some((e) => e.event === 'http' && e.decision === 'allow' && e.host === 'allowed.test'),
      `${what}: the request inside is checked and audited as the tunnel's`,
    );
  }
});

t.test('a request pipelined after a CONNECT head is tunnel data, never a second proxy request', async (t) => {
  const p = g.origin.port;
  const x = await exchange([`CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nCONNECT denied.test:443 HTTP/1.1\r\n\r\n`]);
  t.equal(statusLine(x), 'HTTP/1.1 200 Connection Established');
  t.match(x.reply, /\r\n\r\nHTTP\/1\.1 400 [^]*CONNECT inside a tunnel/, 'the second CONNECT is refused inside the tunnel');
  t.notOk(
    x.audit.some((e) => e.event === 'connect' && e.host === 'denied.test'),
    'and never decided as a proxy request',
  );
  const y = await exchange([
    `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET http://allowed.test:${p}/abs HTTP/1.1\r\nHost: allowed.test:${p}\r\n\r\n`,
  ]);
  t.match(y.reply, /\r\n\r\nHTTP\/1\.1 400 [^]*origin form/, 'an absolute-form request after the head is checked as tunnel data');
  t.equal(g.origin.requests.filter((r) => r.url.endsWith('/abs')).length, 0, 'and never reaches the origin');
});

t.test('a bad CONNECT target is refused 400 with its audit line, as before', async (t) => {
  const x = await exchange(['CONNECT allowed.test HTTP/1.1\r\n\r\n']);
  t.match(statusLine(x), /^HTTP\/1\.1 400 /);
  t.match(x.reply, /x-codex-egress-deny: bad-request/);
  t.match(x.audit, [{ event: 'connect', decision: 'deny', reason: 'bad-request', status: 400, host: 'allowed.test', port: 0 }]);
  const d = await exchange(['CONNECT denied.test:443 HTTP/1.1\r\n\r\n']);
  t.match(statusLine(d), /^HTTP\/1\.1 403 /);
  t.match(d.audit, [{ event: 'connect', decision: 'deny', reason: 'not-allowlisted', status: 403 }]);
});

t.test('heads the fast path leaves alone get http.Server answers as before', async (t) => {
  const p = g.origin.port;
  const table: Array<[string, string, RegExp]> = [
    ['lowercase method', `connect allowed.test:${p} HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 400 [^]*HPE_INVALID_METHOD/],
    ['tab', `CONNECT\tallowed.test:${p} HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['bare LF', `CONNECT allowed.test:${p} HTTP/1.1\n\n`, /^HTTP\/1\.1 400 /],
    ['NUL in a header', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\0b\r\n\r\n`, /^HTTP\/1\.1 400 [^]*HPE_INVALID_HEADER_TOKEN/],
    ['obs-fold', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\r\n b\r\n\r\n`, /^HTTP\/1\.1 400 [^]*HPE_INVALID_HEADER_TOKEN/],
    ['space before the colon', `CONNECT allowed.test:${p} HTTP/1.1\r\nHost : a\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['HTTP/1.2', `CONNECT allowed.test:${p} HTTP/1.2\r\n\r\n`, /^HTTP\/1\.1 400 [^]*HPE_INVALID_VERSION/],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['absolute URL', `CONNECT http://allowed.test:${p}/ HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 400 [^]*bad CONNECT target/],
    ['a head over the limit', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: ${'a'.repeat(3000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ['a partial head, then the end', `CONNECT allowed.test:${p} HTTP/1.1\r\nHost: a\r\n`, /^HTTP\/1\.1 400 [^]*HPE_INVALID_EOF_STATE/],
    [
      'plain HTTP',
      `GET http://allowed.test:${p}/plain HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`,
      /^HTTP\/1\.1 200 OK[^]*hello/,
    ],
  ];
  for (const [what, head, want] of table) {
    const x = await exchange([head], { end: what.endsWith('the end') });
    t.match(x.reply, want, what);
  }
  const h = await exchange(['GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
  t.match(h.reply, /^HTTP\/1\.1 200 [^]*"inproc":true/, '/healthz');
});

t.test('the headers timeout: an idle or unfinished head is answered 408, also after a hand-over', async (t) => {
  const idle = await exchange([], { waitMs: 4_000 });
  t.match(idle.reply, /^HTTP\/1\.1 408 /, 'nothing sent');
  const partial = await exchange(['CONNECT allowed.test:443 HTTP/1.1\r\nHost: a\r\n'], { waitMs: 4_000 });
  t.match(partial.reply, /^HTTP\/1\.1 408 /, 'an unfinished CONNECT head');
  t.ok(partial.ms < HEADERS_TIMEOUT + 600, `cut off in time (${partial.ms} ms)`);
  // Most of the time spent on the fast path, then a header that hands the connection to http.Server:
  // the deadline still runs from the first moment (not restarted by the hand-over).
  const late = await exchange(['CONNECT allowed.test:443 HTTP/1.1\r\n', 'Content-Length: 0\r\n'], { gapMs: 800, waitMs: 4_000 });
  t.match(late.reply, /^HTTP\/1\.1 408 /, 'handed over, still unfinished');
  t.ok(late.ms < HEADERS_TIMEOUT + 600, `cut off at the first deadline (${late.ms} ms)`);
  t.same(
    late.audit.filter((e) => e.event === 'connect'),
    [],
    'nothing admitted',
  );
});
