// The plain-HTTP forwarder of the proxy port (proxy/http/plain.ts), and the readers it stands on:
// head.ts (the request head), response-head.ts (the origin's head and where its body ends), chunked.ts.
// First the readers as tables (in process, no sockets), then the forwarder through the real proxy with a
// scripted origin (a raw TCP server that answers exactly the bytes a test gives it): keep-alive and
// pipelining, every body framing, interim answers, and the origin's malformed answers, which are never
// passed on (502, audited).
import net from 'node:net';
import t from 'tap';
import { readHead } from '../proxy/http/head.js';
import { plainEligible } from '../proxy/http/plain.js';
import { readResponseHead, responseFraming, type ResponseHead } from '../proxy/http/response-head.js';
import { ChunkedBody } from '../proxy/http/chunked.js';
import { rawSession, startInproc, type Inproc } from './harness/inproc.js';
import { OK, scriptedOrigin, type Scripted } from './harness/scripted-origin.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

t.test('readHead: an absolute-form request head, its headers as written, the bytes after it', async (t) => {
  const r = readHead(bytes('GET http://a.test/x?y HTTP/1.1\r\nHost:  a.test \r\nX-Two: a  b\r\nEmpty:\r\n\r\nBODY'), 1024);
  t.equal(r.kind, 'head');
  if (r.kind !== 'head') return;
  t.same(r.head, {
    method: 'GET',
    target: 'http://a.test/x?y',
    version: '1.1',
    headers: ['Host', 'a.test', 'X-Two', 'a  b', 'Empty', ''],
    frames: false,
  });
  t.equal(r.rest.toString(), 'BODY');
  const others: Array<[string, string]> = [
    ['lowercase method', 'get http://a.test/ HTTP/1.1\r\n\r\n'],
    ['non-ASCII in the target', 'GET http://a.test/\xe9 HTTP/1.1\r\n\r\n'],
    ['obs-fold', 'GET http://a.test/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n'],
    ['bare LF', 'GET http://a.test/ HTTP/1.1\nHost: a\r\n\r\n'],
    ['space before the colon', 'GET http://a.test/ HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['HTTP/1.2', 'GET http://a.test/ HTTP/1.2\r\n\r\n'],
  ];
  for (const [what, head] of others) t.equal(readHead(bytes(head), 1024).kind, 'other', what);
});

t.test('plainEligible: what the forwarder takes, and what it leaves to http.Server', async (t) => {
  const head = (s: string) => {
    const r = readHead(bytes(s), 4096);
    if (r.kind !== 'head') throw new Error(`not a head: ${s}`);
    return r.head;
  };
  const take = 'GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n';
  t.ok(plainEligible(head(take)), 'a GET');
  t.ok(plainEligible(head('POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n')), 'a POST with a length');
  const left: Array<[string, string]> = [
    ['HTTP/1.0', 'GET http://a.test/ HTTP/1.0\r\nHost: a.test\r\n\r\n'],
    ['origin form', 'GET /healthz HTTP/1.1\r\n\r\n'],
    ['https URL', 'GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n'],
    ['uppercase scheme', 'GET HTTP://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n'],
    ['chunked request', 'POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: chunked\r\n\r\n'],
    ['Expect', 'POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nEXPECT: 100-continue\r\n\r\n'],
    ['upgrade', 'GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n'],
  ];
  for (const [what, s] of left) t.notOk(plainEligible(head(s)), what);
});

t.test('readResponseHead and responseFraming: clean heads, and where their body ends', async (t) => {
  const framing = (s: string, method = 'GET') => {
    const r = readResponseHead(bytes(s), 4096);
    if (r.kind !== 'head') return r.kind === 'bad' ? `bad: ${r.detail}` : r.kind;
    const f = responseFraming(method, r.head);
    return f.ok
      ? `${f.framing.kind}${f.framing.kind === 'length' ? ` ${f.framing.length}` : ''}${f.reusable ? ' reusable' : ''}`
      : `bad: ${f.detail}`;
  };
  const table: Array<[string, string, string?]> = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'length 5 reusable'],
    ['HTTP/1.1 200 OK\r\ncontent-length:  5 \r\nConnection: close\r\n\r\n', 'length 5'],
    ['HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n', 'length 0 reusable'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n', 'chunked reusable'],
    ['HTTP/1.1 200 OK\r\n\r\n', 'close'],
    ['HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n', 'length 5'],
    ['HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n', 'none reusable'],
    ['HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n', 'none reusable'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'none reusable', 'HEAD'],
    ['HTTP/1.1 200 OK\r\nX: caf\xe9\r\n\r\n', 'close'],
    // the origin's errors
    [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
      'bad: both Content-Length and Transfer-Encoding in the upstream answer',
    ],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n', 'bad: more than one Content-Length in the upstream answer'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n', 'bad: malformed Content-Length in the upstream answer'],
    ['HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', 'bad: malformed Content-Length in the upstream answer'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'bad: an upstream Transfer-Encoding other than chunked'],
    [
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'bad: an upstream Transfer-Encoding other than chunked',
    ],
    ['HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'bad: an upstream Transfer-Encoding other than chunked'],
    ['HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n', 'bad: malformed upstream status line'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\n', 'bad: control bytes in an upstream header'],
    ['HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n', 'bad: control bytes in an upstream header'],
    ['HTTP/1.1 200 OK\r\nX : a\r\n\r\n', 'bad: malformed upstream header'],
    ['HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n', 'bad: malformed upstream header'],
    ['HTTP/2 200\r\n\r\n', 'bad: not an HTTP/1.x response'],
    ['HTTP/1.1 20 OK\r\n\r\n', 'bad: malformed upstream status line'],
    ['HTTP/1.1 2000 OK\r\n\r\n', 'bad: malformed upstream status line'],
    ['ICY 200 OK\r\n\r\n', 'bad: not an HTTP/1.x response'],
  ];
  for (const [head, want, method] of table) t.equal(framing(head, method), want, JSON.stringify(head));
  t.equal(framing('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n'), 'need-more', 'an unfinished head waits');
  t.equal(readResponseHead(bytes(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(100)}\r\n\r\n`), 64).kind, 'bad', 'a head over the limit');
  const all = bytes('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n');
  let early = 0;
  for (let n = 0; n < all.length; n++) if (readResponseHead(all.subarray(0, n), 4096).kind !== 'need-more') early++;
  t.equal(early, 0, 'no proper prefix of a clean head is decided');
  const h: ResponseHead = { version: '1.1', status: 200, reason: 'OK', headers: ['Connection', 'keep-alive, Close'] };
  t.match(responseFraming('GET', h), { ok: true, reusable: false }, 'Connection: close in a list, any case');
});

t.test('ChunkedBody: where a chunked body ends, in one piece or in any split; malformed ones', async (t) => {
  const body = bytes('5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n');
  const after = bytes('HTTP/1.1 200 OK\r\n');
  const whole = Buffer.concat([body, after]);
  t.equal(new ChunkedBody().feed(whole), body.length, 'the end, with bytes after it');
  let wrong = 0;
  for (let cut = 0; cut <= body.length; cut++) {
    const c = new ChunkedBody();
    const a = c.feed(whole.subarray(0, cut));
    const b = a === -1 ? c.feed(whole.subarray(cut)) : a;
    const at = a === -1 ? (typeof b === 'number' && b >= 0 ? cut + b : b) : a;
    if (at !== body.length) wrong++;
  }
  t.equal(wrong, 0, 'every split into two pieces ends at the same byte');
  const c = new ChunkedBody();
  let end: number | string = -1;
  for (let i = 0; i < body.length && end === -1; i++) end = c.feed(body.subarray(i, i + 1));
  t.equal(end, 1, 'byte by byte: the last byte ends it');
  t.equal(new ChunkedBody().feed(bytes('0\r\n\r\n')), 5, 'an empty body');
  const tr = new ChunkedBody();
  t.equal(tr.feed(bytes('3\r\nabc\r\n0\r\nX: 1\r\n')), -1);
  t.equal(tr.trailerAt, 11, 'where the trailers start in the buffer (not passed on)');
  t.equal(tr.feed(bytes('Y: 2\r\n\r\n')), 8);
  t.equal(tr.trailerAt, 0, 'a buffer inside the trailers: none of it is passed on');
  t.equal(new ChunkedBody().feed(bytes('0000000000000000000005\r\nhello\r\n0\r\n\r\n')), 36, 'leading zeros of a size do not count');
  const ext = '5;a=b;c="x \\" y" ; d\t=\te\r\nhello\r\n0;z\r\nT: v\r\nEmpty:\r\n\r\n';
  t.equal(new ChunkedBody().feed(bytes(ext)), ext.length, 'extensions (token and quoted values, spaces around) and trailers');
  t.equal(new ChunkedBody().feed(bytes('5\r\nhel')), -1, 'an unfinished body goes on');
  const malformed: Array<[string, string]> = [
    ['size not hex', 'g\r\n'],
    ['no size', '\r\n'],
    ['negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['size too large', '1000000000000\r\n'],
    ['bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['chunk longer than its size', '5\r\nhello!\r\n0\r\n\r\n'],
    ['bare LF after the data', '5\r\nhello\n0\r\n\r\n'],
    ['control byte in an extension', '5;a\0\r\nhello\r\n'],
    ['control byte in a trailer', '0\r\nX: \x01\r\n\r\n'],
    ['bare LF at the end', '0\r\n\n'],
    // ATTACK9: extensions and trailers have a grammar, and a malformed one is not passed on
    ['space then text after the size', '5 garbage\r\nhello\r\n0\r\n\r\n'],
    ['space after the size, no extension', '5 \r\nhello\r\n0\r\n\r\n'],
    ['extension without a name', '5;\r\nhello\r\n0\r\n\r\n'],
    ['extension value not a token', '5;a=b c\r\nhello\r\n0\r\n\r\n'],
    ['unterminated quoted value', '5;a="b\r\nhello\r\n0\r\n\r\n'],
    ['extension too long', `5;a=${'b'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`],
    ['trailer line without a colon', '0\r\nnot a header\r\n\r\n'],
    ['a status line as a trailer', '0\r\nHTTP/1.1 200 OK\r\n\r\n'],
    ['trailer with an empty name', '0\r\n: x\r\n\r\n'],
    ['trailer section too long', `0\r\n${'X: y\r\n'.repeat(2000)}\r\n`],
  ];
  for (const [what, s] of malformed) t.type(new ChunkedBody().feed(bytes(s)), 'string', what);
});

// ---- through the proxy --------------------------------------------------------------------------------

let g: Inproc;
let o: Scripted;
t.before(async () => {
  o = await scriptedOrigin();
  g = await startInproc({
    zone: { 'raw.test': { a: ['127.0.0.1'] }, 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => [`raw.test:${o.port}`, `allowed.test:${p}`],
  });
});
t.teardown(async () => {
  await g?.close();
  await o?.close();
});

const get = (path = '/', extra = '') => `GET http://raw.test:${o.port}${path} HTTP/1.1\r\nHost: raw.test:${o.port}\r\n${extra}\r\n`;

const session = (parts: Array<string | (() => void)>, opts: Parameters<typeof rawSession>[2] = {}) => rawSession(g, parts, opts);
const statuses = (reply: string) => [...reply.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

t.test('keep-alive: requests one after another on one client connection use one origin connection', async (t) => {
  o.answer = (_req, n) => `HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nr${n}!`;
  const before = o.connections;
  const x = await session([get('/1'), get('/2'), get('/3')], { gapMs: 60 });
  t.same(statuses(x.reply), [200, 200, 200]);
  t.match(x.reply, /r0![^]*r1![^]*r2!/, 'the answers in order');
  t.equal(o.connections - before, 1, 'one origin connection');
  t.match(x.audit, [
    { event: 'http', decision: 'allow', host: 'raw.test', status: 200, method: 'GET' },
    { event: 'http', decision: 'allow', status: 200 },
    { event: 'http', decision: 'allow', status: 200 },
  ]);
  t.equal(
    o.received[before]!.slice(0, o.received[before]!.indexOf('GET /2')),
    `GET /1 HTTP/1.1\r\nHost: raw.test:${o.port}\r\n\r\n`,
    'origin-form, the checked headers',
  );
});

t.test('pipelined requests are answered in order, each decided on its own', async (t) => {
  o.answer = (req) => `HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n${req.slice(4, 8)}`;
  const denied = `GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n`;
  const x = await session([get('/aa') + get('/bb') + denied + get('/cc')]);
  t.same(statuses(x.reply), [200, 200, 403], 'the denied request is refused and the connection closed');
  t.match(x.reply, /\/aa [^]*\/bb /);
  t.match(x.audit, [{ status: 200 }, { status: 200 }, { decision: 'deny', reason: 'not-allowlisted', host: 'denied.test' }]);
  t.notOk(
    o.received.some((r) => r?.includes('/cc')),
    'nothing after a refusal is read as a request',
  );
});

t.test('a Content-Length body is forwarded byte for byte; what follows it is the next request', async (t) => {
  o.answer = () => OK;
  const before = o.connections;
  const smuggled = `GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n`;
  const post = `POST http://raw.test:${o.port}/p HTTP/1.1\r\nHost: raw.test:${o.port}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`;
  const x = await session([post.slice(0, 60), post.slice(60), get('/after')], { gapMs: 40 });
  t.same(statuses(x.reply), [200, 200]);
  const want = `POST /p HTTP/1.1\r\nHost: raw.test:${o.port}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}GET /after HTTP/1.1\r\nHost: raw.test:${o.port}\r\n\r\n`;
  t.equal(o.received[before], want, 'the origin got the body exactly, then the next request');
  t.notOk(
    x.audit.some((e) => e.event === 'http' && e.host === 'denied.test'),
    'a request inside a body is never a request',
  );
});

t.test('a chunked answer is passed on as it came, without its trailers; the connection goes on after it', async (t) => {
  const chunks = '4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n';
  o.answer = (_r, n) =>
    n === 0 ? `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: T\r\n\r\n${chunks}T: 1\r\nContent-Length: 5\r\n\r\n` : OK;
  const x = await session([get('/c'), get('/d')], { gapMs: 60 });
  t.same(statuses(x.reply), [200, 200]);
  t.match(x.reply, `Transfer-Encoding: chunked\r\n\r\n${chunks}\r\nHTTP/1.1 200 OK`, 'the chunks, the end, no trailer field');
  t.notMatch(x.reply, /T: 1|Trailer/);
});

t.test('an answer framed by the close: passed on, and the client connection closes after it', async (t) => {
  o.answer = () => ({ text: 'HTTP/1.1 200 OK\r\nX: 1\r\n\r\nuntil the end', close: true });
  const x = await session([get('/close'), get('/never')], { waitMs: 2000, gapMs: 200 });
  t.equal(x.reply, 'HTTP/1.1 200 OK\r\nX: 1\r\nConnection: close\r\n\r\nuntil the end');
  t.match(x.audit, [{ decision: 'allow', status: 200 }]);
  t.equal(x.audit.length, 1, 'nothing read after it');
});

t.test('interim answers are not passed on; HEAD, 204 and 304 have no body', async (t) => {
  o.answer = (req) =>
    req.startsWith('HEAD')
      ? 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'
      : req.includes('/204')
        ? 'HTTP/1.1 204 No Content\r\n\r\n'
        : 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  const head = `HEAD http://raw.test:${o.port}/ HTTP/1.1\r\nHost: raw.test:${o.port}\r\n\r\n`;
  const x = await session([get('/i'), head, get('/204'), get('/i')], { gapMs: 60 });
  t.same(statuses(x.reply), [200, 200, 204, 200]);
  t.notMatch(x.reply, /100 Continue|103 Early/);
});

t.test("the origin's malformed answers never reach the client: 502, audited", async (t) => {
  const bad: Array<[string, string]> = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok', 'both Content-Length and Transfer-Encoding'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok', 'more than one Content-Length'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok', 'Transfer-Encoding other than chunked'],
    ['HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok', 'control bytes in an upstream header'],
    ['HTTP/1.1 200 OK\r\nSet-Cookie: a\rb\r\n\r\n', 'malformed upstream header'],
    ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', 'upstream status 101 where a final answer was due'],
    ['HTTP/1.1 099 Odd\r\n\r\n', 'upstream status 99'],
    ['HTTP/1.1 200 OK\r\nX-Evil\x01: 1\r\n\r\n', 'malformed upstream header'],
    [`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`, 'too large'],
    ['garbage\r\n\r\n', 'not an HTTP/1.x response'],
  ];
  for (const [answer, detail] of bad) {
    o.answer = () => answer;
    const x = await session([get('/bad')]);
    t.match(x.reply, /^HTTP\/1\.1 502 [^]*x-codex-egress-deny: upstream-error/, detail);
    t.notMatch(x.reply, /Set-Cookie|X-Evil|websocket/i, `${detail}: nothing of the answer is passed on`);
    t.match(x.audit, [{ decision: 'error', reason: 'upstream-error', status: 502, detail: new RegExp(detail) }], detail);
  }
});

t.test('a body the origin gets wrong after its head: the client connection is cut, the line says so', async (t) => {
  for (const [what, answer] of [
    ['chunk longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n'],
    ['closed in the middle', { text: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', close: true }],
  ] as const) {
    o.answer = () => answer;
    const x = await session([get('/cut'), get('/never')], { waitMs: 1500, gapMs: 100 });
    t.ok(statuses(x.reply).length <= 1, `${what}: no second answer, the connection closed`);
    // A chunked answer is never completed for the client; a cut Content-Length one is short of its length.
    t.notMatch(x.reply, /0\r\n\r\n$/, `${what}: the client never gets what looks like a complete answer`);
    t.match(x.audit, [{ decision: 'error', reason: 'upstream-error', status: 200 }], what);
    t.equal(x.audit.length, 1, `${what}: the request after it is never read`);
  }
});

t.test('bytes after the end of an answer: the origin connection is not used again', async (t) => {
  o.answer = (_r, n) => (n === 0 ? `${OK}HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra` : OK);
  const before = o.connections;
  const x = await session([get('/1'), get('/2')], { gapMs: 80 });
  t.same(statuses(x.reply), [200, 200], 'the extra answer is not passed on as the second one');
  t.notMatch(x.reply, /extra/);
  t.equal(o.connections - before, 2, 'a new origin connection for the second request');
});

t.test('the origin answers before it read the whole body: neither connection carries another request', async (t) => {
  o.answer = () => undefined;
  const srv = net.createServer((c) => c.once('data', () => c.write(OK)));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  g.setRules([`raw.test:${o.port}`, `raw.test:${port}`]);
  const post = `POST http://raw.test:${port}/ HTTP/1.1\r\nHost: raw.test:${port}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(10)}`;
  const x = await session([post, get('/never')], { gapMs: 100, waitMs: 1500 });
  srv.close();
  g.setRules([`raw.test:${o.port}`, `allowed.test:${g.origin.port}`]);
  t.equal(x.reply, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok', 'the answer says the connection closes');
  t.match(x.audit, [{ decision: 'allow', status: 200 }]);
  t.equal(x.audit.length, 1);
});

t.test('the client leaves before the answer: the origin request is dropped, the line says so', async (t) => {
  o.answer = () => undefined;
  const x = await session([get('/slow')], { end: true, waitMs: 600 });
  t.equal(x.reply, '');
  t.match(x.audit, [{ decision: 'allow', reason: 'allowed', detail: 'the client closed before the upstream answered' }]);
  t.notOk('status' in x.audit[0]!, 'no status: nothing was answered');
});

t.test('a reload that no longer allows the host refuses a request waiting for its answer', async (t) => {
  o.answer = () => undefined;
  const x = await session([get('/wait'), () => g.setRules([`allowed.test:${g.origin.port}`])], { gapMs: 100, waitMs: 800 });
  g.setRules([`raw.test:${o.port}`, `allowed.test:${g.origin.port}`]);
  t.match(x.reply, /^HTTP\/1\.1 403 [^]*policy-reload/);
  t.match(x.audit, [{ decision: 'deny', reason: 'policy-reload', status: 403 }]);
});

t.test('a kept origin connection that closes instead of answering: a safe request is sent again on a new one', async (t) => {
  // The first request of an origin connection is answered; at the second, the origin closes it.
  o.answer = (_r, n) => (n === 0 ? OK : 'CLOSE');
  const before = o.connections;
  const x = await session([get('/1'), get('/2')], { gapMs: 100 });
  t.same(statuses(x.reply), [200, 200]);
  t.equal(o.connections - before, 2, 'the second request went again, on a new connection');
  // A POST is not sent twice: the origin might have acted on it.
  const post = `POST http://raw.test:${o.port}/ HTTP/1.1\r\nHost: raw.test:${o.port}\r\n\r\n`;
  const y = await session([get('/1'), post], { gapMs: 100 });
  t.same(statuses(y.reply), [200, 502]);
  t.match(y.audit[1], { decision: 'error', reason: 'upstream-error', status: 502 });
  // A new connection that closes is not tried twice.
  o.answer = () => 'CLOSE';
  const z = await session([get('/1')]);
  t.same(statuses(z.reply), [502]);
});

t.test('a later request this path does not take goes to http.Server on the same connection', async (t) => {
  o.answer = () => OK;
  const old = `GET http://raw.test:${o.port}/old HTTP/1.0\r\nHost: raw.test:${o.port}\r\n\r\n`;
  const x = await session([get('/new'), old], { gapMs: 100, waitMs: 1500 });
  t.same(statuses(x.reply), [200, 200]);
  t.match(x.audit, [{ status: 200 }, { status: 200 }]);
  const bad = await session([get('/new'), 'GET http://raw.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'], { gapMs: 100 });
  t.same(statuses(bad.reply), [200, 400]);
});

t.test('an origin address that never completes the handshake: 504 after connectTimeoutMs', async (t) => {
  // A listener that never accepts, its queue filled: the kernel drops further SYNs (127.0.0.1 only).
  const { spawn } = await import('node:child_process');
  const py = spawn('python3', [
    '-c',
    'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)',
  ]);
  t.teardown(() => py.kill('SIGKILL'));
  const port = await new Promise<number>((r) => py.stdout.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => undefined));
  t.teardown(() => fillers.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 300));
  const h = await startInproc({
    zone: { 'slow.test': { a: ['127.0.0.1'] } },
    rules: [`slow.test:${port}`],
    limits: { connectTimeoutMs: 500 },
  });
  t.teardown(() => h.close());
  const started = Date.now();
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(h.proxy.address.port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
    s.write(`GET http://slow.test:${port}/ HTTP/1.1\r\nHost: slow.test:${port}\r\n\r\n`);
    setTimeout(() => s.destroy(), 5_000);
  });
  t.match(reply, /^HTTP\/1\.1 504 [^]*connect timeout after 500 ms/);
  t.ok(Date.now() - started < 3_000, 'given up on after the connect timeout, not the idle timeout');
  t.match(h.audit.events, [
    { event: 'http', decision: 'error', reason: 'upstream-error', status: 504, detail: 'connect timeout after 500 ms' },
  ]);
});

t.test('timeouts: a silent origin gets 504 (not the client blamed); a client that reads nothing is named', async (t) => {
  const silent = await scriptedOrigin();
  silent.answer = (req) =>
    req.includes('/big') ? `HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n${'x'.repeat(8_000_000)}` : undefined;
  const h = await startInproc({
    zone: { 'quiet.test': { a: ['127.0.0.1'] } },
    rules: [`quiet.test:${silent.port}`],
    limits: { idleTimeoutMs: 600, connectTimeoutMs: 300 },
  });
  t.teardown(async () => {
    await h.close();
    await silent.close();
  });
  const ask = (path: string, read: boolean) =>
    new Promise<string>((resolve) => {
      const s = net.connect(h.proxy.address.port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got = (got + d.toString('latin1')).slice(0, 400)));
      s.on('close', () => resolve(got));
      s.on('error', () => undefined);
      s.write(`GET http://quiet.test:${silent.port}${path} HTTP/1.1\r\nHost: quiet.test:${silent.port}\r\n\r\n`);
      if (!read) s.once('data', () => s.pause());
      setTimeout(() => s.destroy(), 4_000);
    });
  const reply = await ask('/silent', true);
  t.match(reply, /^HTTP\/1\.1 504 [^]*no answer from the upstream for 600 ms/, 'the origin is named, past the connect timeout');
  t.match(h.audit.events.at(-1), {
    decision: 'error',
    reason: 'upstream-error',
    status: 504,
    detail: 'no answer from the upstream for 600 ms',
  });
  await ask('/big', false);
  t.match(h.audit.events.at(-1), { decision: 'allow', status: 200, detail: 'the client read nothing of the answer for 600 ms' });
});

t.test('a connection that leaves this path closes its kept origin connection; Proxy-Connection: close is honoured', async (t) => {
  o.answer = () => OK;
  const closedBefore = o.closed;
  const connect = `CONNECT raw.test:${o.port} HTTP/1.1\r\nHost: raw.test:${o.port}\r\n\r\n`;
  let closedDuring = -1;
  const x = await session([get('/1'), connect, () => (closedDuring = o.closed - closedBefore)], { gapMs: 150, waitMs: 800 });
  t.match(x.reply, /^HTTP\/1\.1 200 OK[^]*HTTP\/1\.1 200 Connection Established/);
  t.equal(closedDuring, 1, 'the origin connection of the plain request was closed when the tunnel opened (the tunnel still open)');
  const y = await session([get('/1', 'Proxy-Connection: close\r\n'), get('/never')], { gapMs: 150 });
  t.same(statuses(y.reply), [200]);
  t.match(y.reply, /Connection: close\r\n/);
});
