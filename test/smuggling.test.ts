// Found by an attack review: request smuggling past the framing checks, through the real gateway and real
// sockets, against an origin that parses HTTP itself and logs every request it parses
// (test/fixtures/rawhttp.ts), so a smuggled request shows up.
//
// 1. Header count: Node's parser hands the proxy only the first 1000 headers (rawHeaders is cut at
//    maxHeaderPairs = 2000 entries) but frames the body by all of them, so a `Transfer-Encoding:
//    chunked` or `Content-Length` after 1000 filler headers (4 KB, well under the 16 KB header limit)
//    is invisible to checkRequestHead: the proxy forwards the request with no framing and writes the
//    decoded body after it, which the origin parses as a second request to any Host.
// 2. Header names that spell a framing or identity header with `_` for `-` (`Transfer_Encoding`)
//    are forwarded; origins that map `_` to `-` (CGI/WSGI-style environments) read them as the real one.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { startCore, nodeIn, RULES, WEB, type Core } from './harness/core.js';
import type { Proc } from './harness/netns.js';
import { ROOT } from './harness/world.js';

let core: Core;
let origin: Proc;
t.before(async () => {
  core = await startCore({ flagRules: [...RULES, 'allowed.test:8080'], gatewayArgs: ['--hello-timeout', '2', '--headers-timeout', '2'] });
  origin = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8080']);
  await origin.waitFor(/rawhttp ready/);
});
t.teardown(async () => {
  await origin?.stop();
  await core?.close();
});

type Seen = { method: string; path: string; host?: string; te?: string; cl?: string; bodyLen: number; headers: string[] };
const seen = (from = 0): Seen[] =>
  origin
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Seen)
    .slice(from);
const mark = () => seen().length;
const settle = () => new Promise((r) => setTimeout(r, 300));

/** Send raw bytes to the proxy, in pieces `gapMs` apart, and return what came back. */
function raw(parts: string[], gapMs = 300, waitMs = 2500) {
  return nodeIn<{ reply: string }>(
    core.ns,
    `import net from 'node:net';
     const parts = ${JSON.stringify(parts)};
     const s = net.connect({ port: 3128, host: '127.0.0.1' });
     let reply = '';
     s.on('data', (d) => { reply += d.toString('latin1'); });
     s.on('close', done);
     s.on('error', () => undefined);
     (async () => { for (const p of parts) { if (s.destroyed) break; s.write(Buffer.from(p, 'latin1')); await new Promise((r) => setTimeout(r, ${gapMs})); } })();
     const timer = setTimeout(done, ${waitMs});
     function done() { clearTimeout(timer); console.log(JSON.stringify({ reply })); process.exit(0); }`,
  );
}

const H = 'allowed.test:8080';
const SMUGGLED = 'GET /steal HTTP/1.1\r\nHost: evil.test\r\n\r\n';
const CHUNKED_BODY = `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;
const filler = (n: number) => Array.from({ length: n }, (_, i) => `x${i % 10}:\r\n`).join('');

const noSmuggling = (t: Test, from: number, what: string) => {
  const s = seen(from);
  t.notOk(
    s.some((r) => r.path === '/steal' || r.host === 'evil.test'),
    `${what}: the origin never parsed the smuggled request (${JSON.stringify(s.map((r) => `${r.method} ${r.path} ${r.host}`))})`,
  );
};

t.test('framing headers after 1000 other headers still frame the request the origin receives', async (t) => {
  const cases: Array<[string, string[]]> = [];
  for (const method of ['GET', 'DELETE', 'POST']) {
    cases.push([
      `${method} absolute-form, chunked after 1100 headers`,
      [`${method} http://${H}/many HTTP/1.1\r\nHost: ${H}\r\n${filler(1100)}Transfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
    ]);
    cases.push([
      `${method} absolute-form, Content-Length after 1100 headers`,
      [`${method} http://${H}/many HTTP/1.1\r\nHost: ${H}\r\n${filler(1100)}Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ]);
  }
  cases.push([
    'inside a CONNECT tunnel on a port rule',
    [
      `CONNECT ${H} HTTP/1.1\r\nHost: ${H}\r\n\r\n`,
      `POST /many HTTP/1.1\r\nHost: ${H}\r\n${filler(1100)}Transfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`,
    ],
  ]);
  for (const [what, parts] of cases) {
    const m = mark();
    const r = await raw(parts);
    await settle();
    noSmuggling(t, m, what);
    const s = seen(m);
    // Either refused (400) or forwarded with its body framed: one request, carrying the body.
    if (/^(HTTP\/1\.1 200 Connection Established\r\n\r\n)?HTTP\/1\.1 400 /.test(r.reply))
      t.same(s, [], `${what}: refused, and the origin parsed nothing`);
    else
      t.same(
        s.map((x) => [x.path, x.bodyLen]),
        [['/many', SMUGGLED.length]],
        `${what}: one request, with its body (${JSON.stringify(r.reply.slice(0, 200))})`,
      );
  }
});

t.test('a second Host or Connection header after 1000 other headers is seen', async (t) => {
  const m = mark();
  const r = await raw([`GET http://${H}/two-hosts HTTP/1.1\r\nHost: ${H}\r\n${filler(1100)}Host: evil.test\r\n\r\n`]);
  t.match(r.reply, /^HTTP\/1\.1 400 /, 'two Host headers are refused wherever the second one is');
  await settle();
  t.same(seen(m), [], 'the origin parsed nothing');
});

t.test('header names spelling a framing or identity header with "_" are refused', async (t) => {
  for (const name of ['Transfer_Encoding', 'transfer_encoding', 'Content_Length', 'content_length', 'Content_length']) {
    const m = mark();
    const cl = name.toLowerCase().includes('content') ? 'Transfer-Encoding: chunked' : `Content-Length: ${SMUGGLED.length}`;
    const body = name.toLowerCase().includes('content') ? CHUNKED_BODY : SMUGGLED;
    const value = name.toLowerCase().includes('host') ? 'evil.test' : name.toLowerCase().includes('content') ? '0' : 'chunked';
    const r = await raw([`POST http://${H}/u HTTP/1.1\r\nHost: ${H}\r\n${name}: ${value}\r\n${cl}\r\n\r\n${body}`]);
    t.match(r.reply, /^HTTP\/1\.1 400 [\s\S]*x-codex-egress-deny: bad-request/, `${name}: refused 400`);
    await settle();
    t.same(seen(m), [], `${name}: the origin parsed nothing`);
  }
});
