// ATTACK4 (security review of credential injection): reproductions through the real proxy on
// 127.0.0.1 (startProxy with the production inject options, a real TLS origin that answers like a
// common web server, real sockets and TLS from the client side). No namespace, no root.
// ATTACK8 (held, last test): inside an intercepted tunnel, a request without Host, with two, or HTTP/1.0
// without Host, never reaches the origin and never gets the credential; an unknown Expect is an audited 417.
import t from 'tap';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCa, LeafIssuer } from '../proxy/inject/ca.js';
import { parseCredentials, SENTINEL } from '../proxy/inject/credentials.js';
import { startProxy, type ProxyServer } from '../proxy/http/proxy.js';
import { Resolver } from '../proxy/dns/resolver.js';
import { DEFAULT_LIMITS } from '../proxy/config.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { FakeUpstream, MemoryAudit, loopbackOrPublic } from './harness/inproc.js';
import { tempDir } from './harness/world.js';

const REAL = 'sk-real-attack4-0123456789abcdef';
const KEY_REAL = 'real-api-key-attack4-987654321';
const tmp = tempDir('codex-egress-attack4-');

let origin: https.Server;
let proxy: ProxyServer;
let port = 0;
let projectCa = '';
const audit = new MemoryAudit();
/** What the origin received: method and raw header list, per request. */
const seen: Array<{ method: string; raw: string[] }> = [];

t.before(async () => {
  // the "real" host's certificate comes from a test CA given as --upstream-ca
  const up = ensureCa(join(tmp.path, 'upstream-ca'), 'upstream');
  const upIssuer = new LeafIssuer(readFileSync(up.cert, 'utf8'), readFileSync(up.key, 'utf8'));
  // An origin that behaves like a stock web server: TRACE echoes the request (Apache's TraceEnable is
  // on by default), everything else reports which header names it got.
  origin = https.createServer({ SNICallback: (name, cb) => cb(null, upIssuer.contextFor(name.toLowerCase())) }, (req, res) => {
    seen.push({ method: req.method ?? '', raw: req.rawHeaders });
    req.resume();
    req.on('end', () => {
      if (req.method === 'TRACE') {
        let echo = `TRACE ${req.url} HTTP/${req.httpVersion}\r\n`;
        for (let i = 0; i < req.rawHeaders.length; i += 2) echo += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
        res.writeHead(200, { 'content-type': 'message/http' });
        return void res.end(echo);
      }
      if (req.url === '/redirect') {
        res.writeHead(302, { location: `https://key.test:${port}/landed` });
        return void res.end();
      }
      res.end(`ok ${req.method}\n`);
    });
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  port = (origin.address() as AddressInfo).port;

  const ca = ensureCa(join(tmp.path, 'project-ca'), 'attack4');
  projectCa = readFileSync(ca.cert, 'utf8');
  const credentials = parseCredentials(
    JSON.stringify({
      v: 1,
      credentials: [
        { name: 'openai', host: 'api.test', port, value: REAL },
        { name: 'keyed', host: 'key.test', port, header: 'X-Api-Key', format: '{value}', value: KEY_REAL, foreign: 'refuse' },
      ],
    }),
  );
  const r = mergeSources({ defaults: false, flags: [`api.test:${port}`, `key.test:${port}`] });
  if (!r.ok) throw new Error(r.errors.join('; '));
  const allowlist = r.allowlist;
  const resolver = new Resolver(new FakeUpstream({ 'api.test': { a: ['127.0.0.1'] }, 'key.test': { a: ['127.0.0.1'] } }), {
    guard: loopbackOrPublic,
    allowed: (name) => allowlist.decide(name, 'dns').allow,
  });
  proxy = await startProxy('127.0.0.1', 0, {
    allowlist: () => allowlist,
    resolver,
    audit,
    limits: DEFAULT_LIMITS,
    health: () => ({ healthy: true }),
    report: () => undefined,
    inject: { issuer: new LeafIssuer(projectCa, readFileSync(ca.key, 'utf8')), credentials, upstreamCa: readFileSync(up.cert, 'utf8') },
  });
});
t.teardown(async () => {
  await proxy?.close();
  origin?.closeAllConnections();
  await new Promise<void>((r) => (origin ? origin.close(() => r()) : r()));
  tmp.remove();
});

/** CONNECT host:port through the proxy, TLS with the gateway (trusting the project CA), send `request`, read until close. */
function through(host: string, request: string, timeoutMs = 5000, connectHost = host): Promise<string> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const s = net.connect(proxy.address.port, '127.0.0.1', () =>
      s.write(`CONNECT ${connectHost}:${port} HTTP/1.1\r\nHost: ${connectHost}:${port}\r\n\r\n`),
    );
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    const finish = (extra = '') => (clearTimeout(timer), resolve(Buffer.concat(out).toString('latin1') + extra));
    s.on('error', (e) => finish(`ERROR ${e.message}`));
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (!/^HTTP\/1\.1 200/.test(head)) return (s.destroy(), finish(`CONNECT refused: ${head}`));
      const c2 = tls.connect({ socket: s, servername: host, ca: projectCa }, () => c2.write(request));
      c2.on('data', (d: Buffer) => out.push(d));
      c2.on('error', (e) => finish(`ERROR ${e.message}`));
      c2.on('close', () => finish());
    };
    s.on('data', onData);
  });
}

t.test('ATTACK4 TRACE: an origin that echoes TRACE must not show the sandbox the injected key', async (t) => {
  const before = seen.length;
  const out = await through(
    'api.test',
    `TRACE / HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\nConnection: close\r\n\r\n`,
  );
  t.notMatch(out, REAL, 'the real key does not come back to the client');
  t.notOk(
    seen.slice(before).some((r) => r.method === 'TRACE' && r.raw.includes(`Bearer ${REAL}`)),
    'no TRACE carrying the real key reached the origin',
  );
  // an ordinary request is still injected (the fix refuses TRACE only)
  const ok = await through(
    'api.test',
    `GET / HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\nConnection: close\r\n\r\n`,
  );
  t.match(ok, /^HTTP\/1\.1 200/);
  t.ok(seen.at(-1)?.raw.includes(`Bearer ${REAL}`), 'GET got the real key');
});

t.test('ATTACK4 underscore: X_Api_Key is the credential header to a CGI-style origin (foreign refuse, duplicate)', async (t) => {
  // the gateway itself treats `_` for `-` as the same header for framing headers (framing.ts): an
  // origin that maps `_` to `-` reads X_Api_Key as X-Api-Key
  const before = seen.length;
  const own = await through(
    'key.test',
    `GET / HTTP/1.1\r\nHost: key.test:${port}\r\nX_Api_Key: attackers-own-key\r\nConnection: close\r\n\r\n`,
  );
  t.match(own, /^HTTP\/1\.1 403/, 'another key under the underscore spelling is refused like X-Api-Key: attackers-own-key');
  const dup = await through(
    'key.test',
    `GET / HTTP/1.1\r\nHost: key.test:${port}\r\nX-Api-Key: ${SENTINEL}\r\nX_Api_Key: attackers-own-key\r\nConnection: close\r\n\r\n`,
  );
  t.match(dup, /^HTTP\/1\.1 400/, 'the sentinel beside an underscore spelling is a duplicate');
  t.equal(seen.length, before, 'nothing reached the origin');
  const ok = await through('key.test', `GET / HTTP/1.1\r\nHost: key.test:${port}\r\nx-api-key: ${SENTINEL}\r\nConnection: close\r\n\r\n`);
  t.match(ok, /^HTTP\/1\.1 200/);
  t.ok(seen.at(-1)?.raw.includes(KEY_REAL), 'the sentinel alone is still injected');
});

// What held (kept as regression checks): each of these reaches the origin without the real key, or
// not at all.
t.test('ATTACK4 held: obs-fold, absolute-form, Expect, comma-joined, tab, chunked trailer, pipelined second request', async (t) => {
  const req = (h: string, extra = '') => `GET / HTTP/1.1\r\nHost: api.test:${port}\r\n${h}Connection: close\r\n\r\n${extra}`;
  const fold = await through('api.test', req(`Authorization: Bearer\r\n ${SENTINEL}\r\n`));
  t.match(fold, /^HTTP\/1\.1 400/, 'obs-fold refused by the parser');
  const abs = await through(
    'api.test',
    `GET https://other.test/ HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`,
  );
  t.match(abs, /^HTTP\/1\.1 400/, 'absolute-form inside the tunnel refused');
  const before = seen.length;
  await through('api.test', req(`Authorization: Bearer ${SENTINEL}, Bearer x\r\n`));
  t.notOk(
    seen.at(-1)?.raw.some((v) => v.includes(REAL)),
    'comma-joined: not the sentinel, forwarded unchanged',
  );
  await through('api.test', req(`Authorization:\tBearer ${SENTINEL}\t\r\n`));
  t.ok(seen.at(-1)?.raw.includes(`Bearer ${REAL}`), 'tab around the value: the same sentinel (OWS), injected');
  const chunk = await through(
    'api.test',
    `POST / HTTP/1.1\r\nHost: api.test:${port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\na\r\n0\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`,
  );
  t.match(chunk, /^HTTP\/1\.1 200/);
  t.notOk(
    seen.at(-1)?.raw.some((v) => v.includes(REAL)),
    'a trailer is never rewritten (nor forwarded)',
  );
  const exp = await through(
    'api.test',
    `POST / HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\nExpect: 100-continue\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz`,
  );
  t.match(exp, /HTTP\/1\.1 200/);
  t.ok(
    seen.at(-1)?.raw.includes(`Bearer ${REAL}`) && !seen.at(-1)?.raw.some((v) => /100-continue/i.test(v)),
    'Expect: injected once, Expect not forwarded',
  );
  const two = await through(
    'api.test',
    `GET /a HTTP/1.1\r\nHost: api.test:${port}\r\n\r\nGET /b HTTP/1.1\r\nHost: other.test\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`,
  );
  t.match(two, /HTTP\/1\.1 403/, 'the pipelined second request with another Host refused');
  t.ok(seen.length >= before + 3);
  const n = seen.length;
  const redirect = await through(
    'api.test',
    `GET /redirect HTTP/1.1\r\nHost: api.test:${port}\r\nAuthorization: Bearer ${SENTINEL}\r\nConnection: close\r\n\r\n`,
  );
  t.match(redirect, /^HTTP\/1\.1 302/, 'a redirect is passed to the client, not followed');
  t.equal(seen.length, n + 1, 'the gateway sent no second request (the key went nowhere else)');
  const h2 = await through('api.test', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  t.match(h2, /^HTTP\/1\.1 400/, 'an HTTP/2 preface inside the tunnel is refused');
  t.equal(seen.length, n + 1);
  // a WebSocket upgrade the origin does not take, with a second request behind it (refuse-foreign host)
  const ws = await through(
    'key.test',
    `GET / HTTP/1.1\r\nHost: key.test:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Api-Key: ${SENTINEL}\r\n\r\nGET /second HTTP/1.1\r\nHost: key.test:${port}\r\nX-Api-Key: attackers-own-key\r\n\r\n`,
  );
  t.notMatch(ws, /^HTTP\/1\.1 101/);
  t.notOk(
    seen.some((r) => r.raw.includes('attackers-own-key')),
    'the request behind a refused upgrade never reached the origin',
  );
  // other spellings of the injected host in CONNECT are the same tunnel: intercepted (the project CA's
  // leaf verified), so refuse-foreign still applies and no end-to-end tunnel bypasses it
  for (const spelled of ['KEY.Test', 'key.test.']) {
    const own = await through(
      'key.test',
      `GET / HTTP/1.1\r\nHost: key.test:${port}\r\nX-Api-Key: attackers-own-key\r\nConnection: close\r\n\r\n`,
      5000,
      spelled,
    );
    t.match(own, /^HTTP\/1\.1 403/, `CONNECT ${spelled}: intercepted, the foreign key refused`);
  }
});

t.test('intercepted tunnel: no Host, two Hosts, HTTP/1.0 without Host, Expect other: refused, audited, never forwarded', async (t) => {
  const A = `Authorization: Bearer ${SENTINEL}\r\n`;
  const cases: Array<[string, string, RegExp]> = [
    ['1.1 no Host', `GET / HTTP/1.1\r\n${A}Connection: close\r\n\r\n`, /^HTTP\/1\.1 400/],
    ['1.0 no Host', `GET / HTTP/1.0\r\n${A}\r\n`, /^HTTP\/1\.1 400/],
    ['two Hosts', `GET / HTTP/1.1\r\nHost: api.test:${port}\r\nHost: api.test:${port}\r\n${A}Connection: close\r\n\r\n`, /^HTTP\/1\.1 400/],
    [
      'Host, then evil Host',
      `GET / HTTP/1.1\r\nHost: api.test:${port}\r\nhost: evil.test\r\n${A}Connection: close\r\n\r\n`,
      /^HTTP\/1\.1 400/,
    ],
    ['Expect other', `GET / HTTP/1.1\r\nHost: api.test:${port}\r\nExpect: nope\r\n${A}Connection: close\r\n\r\n`, /^HTTP\/1\.1 417/],
    [
      'upgrade, no Host',
      `GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${A}\r\n`,
      /^HTTP\/1\.1 400/,
    ],
  ];
  for (const [what, req, want] of cases) {
    const n = seen.length;
    const before = audit.events.length;
    const got = await through('api.test', req);
    t.match(got, want, `${what}: ${JSON.stringify(got.split('\r\n')[0])}`);
    t.notMatch(got, REAL, `${what}: never the credential`);
    t.equal(seen.length, n, `${what}: the origin saw nothing`);
    const denies = audit.events.slice(before).filter((e) => (e as { decision?: string }).decision === 'deny');
    t.equal(denies.length, 1, `${what}: one deny line`);
  }
});
