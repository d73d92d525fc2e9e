// The proxy's framing, response checks, first bytes on every port and lingering close, through the
// real gateway and real sockets, against an origin that parses HTTP itself and logs every request it
// parses (test/fixtures/rawhttp.ts), so a smuggled request would show up.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { startCore, curl, nodeIn, PROXY, RULES, WEB, type Core } from './harness/core.js';
import type { Proc } from './harness/netns.js';
import { ROOT } from './harness/world.js';

const TLS = join(ROOT, 'dist', 'test', 'harness', 'tls.js');
let core: Core;
let origin: Proc;
t.before(async () => {
  core = await startCore({
    flagRules: [...RULES, 'allowed.test:8080', 'allowed.test:9443', 'allowed.test:80'],
    gatewayArgs: ['--hello-timeout', '2', '--headers-timeout', '2'],
  });
  origin = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8080', '9443']);
  await origin.waitFor(/rawhttp ready/);
});
t.teardown(async () => {
  await origin?.stop();
  await core?.close();
});

type Seen = {
  seq: number;
  conn: number;
  method: string;
  path: string;
  host?: string;
  te?: string;
  cl?: string;
  connection?: string;
  bodyLen: number;
  body: string;
  hello?: number;
};
/** Every request the origin parsed since `mark`. */
const seen = (mark = 0): Seen[] =>
  origin
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Seen)
    .slice(mark);
const mark = () => seen().length;
const settle = () => new Promise((r) => setTimeout(r, 300));
const audited = (pred: (e: Record<string, unknown>) => boolean) => core.gateway.waitForAudit(pred);

/**
 * Send raw bytes to the proxy (in pieces when `payload` is a list, `gapMs` apart) and return what came
 * back before it closed or the time ran out.
 */
function raw(payload: string | string[], opts: { waitMs?: number; gapMs?: number; port?: number; readAfterSending?: boolean } = {}) {
  return nodeIn<{ reply: string; closed: boolean; error?: string }>(
    core.ns,
    `import net from 'node:net';
     const parts = ${JSON.stringify(Array.isArray(payload) ? payload : [payload])};
     const s = net.connect({ port: ${opts.port ?? 3128}, host: '127.0.0.1', allowHalfOpen: ${!!opts.readAfterSending} });
     let reply = ''; let closed = false; let error;
     const read = () => { s.on('data', (d) => { reply += d.toString('latin1'); }); s.on('end', () => s.end()); };
     // Like curl: a client that reads the answer only once it has sent its whole request.
     if (${!!opts.readAfterSending}) setTimeout(read, ${(opts.gapMs ?? 0) * (Array.isArray(payload) ? payload.length : 1) + 200}); else read();
     s.on('close', () => { closed = true; done(); });
     s.on('error', (e) => { error = e.code; });
     (async () => { for (const p of parts) { if (s.destroyed) break; s.write(Buffer.from(p, 'latin1')); await new Promise((r) => setTimeout(r, ${opts.gapMs ?? 0})); } })();
     const timer = setTimeout(done, ${opts.waitMs ?? 3000});
     function done() { clearTimeout(timer); console.log(JSON.stringify({ reply, closed, error })); process.exit(0); }`,
  );
}

const SMUGGLED = 'GET /steal HTTP/1.1\r\nHost: evil.test\r\n\r\n';
const noSmuggling = (t: Test, from: number, what: string) => {
  const s = seen(from);
  t.notOk(
    s.some((r) => r.path === '/steal' || r.host === 'evil.test'),
    `${what}: the origin never parsed the smuggled request (${JSON.stringify(s.map((r) => `${r.method} ${r.path} ${r.host}`))})`,
  );
};

t.test('Connection naming a framing or identity header is refused 400, and nothing reaches the origin', async (t) => {
  const cases: Array<[string, string]> = [
    [
      "the issue's example",
      `GET http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: content-length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    [
      'mixed case',
      `GET http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: Content-LENGTH\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    [
      'transfer-encoding in a list',
      `POST http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: keep-alive, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    ],
    ['host', `GET http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: HOST\r\n\r\n`],
    [
      'a second Connection header',
      `GET http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: keep-alive\r\nConnection: content-length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
  ];
  for (const [what, payload] of cases) {
    const m = mark();
    const r = await raw(payload);
    t.match(r.reply, /^HTTP\/1\.1 400 [\s\S]*x-codex-egress-deny: bad-request[\s\S]*Connection names/, what);
    t.match(r.reply, /connection: close/i, `${what}: the connection is closed after the refusal`);
    await settle();
    t.same(seen(m), [], `${what}: the origin parsed nothing`);
  }
  t.match(
    await audited((e) => e.event === 'http' && e.reason === 'bad-request' && /Connection names content-length/.test(String(e.detail))),
    { decision: 'deny', status: 400, host: 'allowed.test', port: 8080 },
  );
});

t.test('ambiguous or unsupported framing is refused 400', async (t) => {
  const cases: Array<[string, string]> = [
    [
      'both framings',
      `POST http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'two lengths',
      `POST http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx`,
    ],
    [
      'gzip, chunked',
      `POST http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    ],
    ['gzip alone', `POST http://allowed.test:8080/a HTTP/1.1\r\nHost: allowed.test:8080\r\nTransfer-Encoding: gzip\r\n\r\n${SMUGGLED}`],
    [
      'chunked in HTTP/1.0',
      `POST http://allowed.test:8080/a HTTP/1.0\r\nHost: allowed.test:8080\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
  ];
  for (const [what, payload] of cases) {
    const m = mark();
    const r = await raw(payload);
    t.match(r.reply, /^HTTP\/1\.1 400 /, what);
    await settle();
    t.same(seen(m), [], `${what}: the origin parsed nothing`);
  }
});

t.test('bodies of every method reach the origin with their own framing; no body becomes a request', async (t) => {
  for (const method of ['DELETE', 'OPTIONS', 'GET', 'POST', 'PUT', 'PATCH']) {
    const m = mark();
    const chunked = `${method} http://allowed.test:8080/m HTTP/1.1\r\nHost: allowed.test:8080\r\nTransfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;
    const r = await raw(chunked, { waitMs: 1500 });
    t.match(r.reply, new RegExp(`origin saw ${method} /m host=allowed.test:8080 body=${SMUGGLED.length}`), `${method} chunked`);
    const length = `${method} http://allowed.test:8080/l HTTP/1.1\r\nHost: allowed.test:8080\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`;
    const l = await raw(length, { waitMs: 1500 });
    t.match(l.reply, new RegExp(`origin saw ${method} /l host=allowed.test:8080 body=${SMUGGLED.length}`), `${method} with Content-Length`);
    await settle();
    const s = seen(m);
    t.same(
      s.map((x) => [x.method, x.path, x.te ?? null, x.cl ?? null]),
      [
        [method, '/m', 'chunked', null],
        [method, '/l', null, String(SMUGGLED.length)],
      ],
      `${method}: framing preserved`,
    );
    noSmuggling(t, m, method);
  }
  const m = mark();
  const empty = await raw('POST http://allowed.test:8080/e HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n', { waitMs: 1500 });
  t.match(empty.reply, /origin saw POST \/e host=allowed.test:8080 body=0/);
  t.match(seen(m)[0], { method: 'POST', cl: '0' }, 'a body-less POST goes out with Content-Length: 0');
});

t.test('Connection: close from the client is honoured', async (t) => {
  const r = await raw('GET http://allowed.test:8080/c HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: close\r\n\r\n', { waitMs: 3000 });
  t.match(r.reply, /^HTTP\/1\.1 200 /);
  t.match(r.reply, /\r\nconnection: close\r\n/i, 'answered connection: close');
  t.notMatch(r.reply, /keep-alive/i);
  t.ok(r.closed, 'and closed');
});

t.test('upstream answers are checked: bad status, reason or header gives 502, logged, and the gateway keeps serving', async (t) => {
  for (const path of ['/status/000', '/status/099', '/status/600', '/status/999', '/reason-ctl', '/header-ctl', '/switch']) {
    const r = await raw(`GET http://allowed.test:8080${path} HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n`);
    t.match(r.reply, /^HTTP\/1\.1 502 [\s\S]*x-codex-egress-deny: upstream-error/, path);
    t.match(await audited((e) => e.event === 'http' && e.decision === 'error' && e.status === 502 && e.port === 8080), {
      reason: 'upstream-error',
      host: 'allowed.test',
    });
    t.notOk(core.gateway.proc.exited, `${path}: the gateway is still running`);
  }
  const m = mark();
  const after = await raw('GET http://allowed.test:8080/after HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n', { waitMs: 1500 });
  t.match(after.reply, /origin saw GET \/after/, 'and still serving');
  const before = seen()
    .filter((x) => x.path.startsWith('/status') || x.path.endsWith('-ctl') || x.path === '/switch')
    .map((x) => x.conn);
  t.notOk(before.includes(seen(m)[0]!.conn), 'a connection that gave a refused answer is never reused');
  t.equal((await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, 'https://allowed.test/'])).code, 200);
});

t.test("plain HTTP inside a tunnel must name the tunnel's host, on every request", async (t) => {
  const connect = 'CONNECT allowed.test:8080 HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n';
  let m = mark();
  const evil = await raw([connect, 'GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n'], { gapMs: 200 });
  t.match(evil.reply, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 403 [\s\S]*host-mismatch/, 'a request naming another host is refused');
  await settle();
  t.same(seen(m), [], 'and never reaches the origin');
  m = mark();
  const keepAlive = await raw(
    [connect, 'GET /one HTTP/1.1\r\nHost: ALLOWED.test.\r\n\r\n', 'GET /two HTTP/1.1\r\nHost: evil.test\r\n\r\n'],
    { gapMs: 300 },
  );
  t.match(
    keepAlive.reply,
    /origin saw GET \/one host=ALLOWED\.test\./,
    'the first request (case and trailing dot differ) is forwarded as written',
  );
  t.match(keepAlive.reply, /403 [\s\S]*host-mismatch/, 'the second request on the same tunnel is refused');
  await settle();
  t.same(
    seen(m).map((x) => x.path),
    ['/one'],
  );
  for (const [what, req] of [
    ['absolute form naming another host', 'GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n'],
    ['a soft hyphen in Host', 'GET / HTTP/1.1\r\nHost: allo\u00adwed.test\r\n\r\n'],
    [
      'smuggling inside the tunnel',
      `GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: content-length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    ],
    ['a leading empty line (not HTTP to the check)', '\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n'],
    ['CONNECT inside the tunnel', 'CONNECT evil.test:80 HTTP/1.1\r\nHost: evil.test:80\r\n\r\n'],
    [
      'a WebSocket upgrade naming another host',
      'GET /ws HTTP/1.1\r\nHost: evil.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    ],
  ] as const) {
    m = mark();
    const r = await raw([connect, req], { gapMs: 200 });
    t.notMatch(r.reply, /origin saw/, what);
    await settle();
    t.same(seen(m), [], `${what}: nothing reached the origin`);
  }
});

t.test('WebSockets through a CONNECT tunnel: wss:// (as Codex does for /v1/responses) and ws://', async (t) => {
  const r = await nodeIn<{ wss: string; wssEcho: boolean; ws: string; wsEcho: boolean }>(
    core.ns,
    `import net from 'node:net'; import tls from 'node:tls'; import { readFileSync } from 'node:fs';
     const frame = (text) => { const p = Buffer.from(text); const mask = Buffer.from([1, 2, 3, 4]);
       return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]); };
     const upgrade = 'GET /v1/responses HTTP/1.1\\r\\nHost: allowed.test\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n';
     function tunnel(port) { return new Promise((resolve) => { const s = net.connect(3128, '127.0.0.1'); let b = '';
       s.on('data', function on(d) { b += d; if (b.includes('\\r\\n\\r\\n')) { s.removeListener('data', on); resolve(s); } });
       s.write('CONNECT allowed.test:' + port + ' HTTP/1.1\\r\\nHost: allowed.test:' + port + '\\r\\n\\r\\n'); }); }
     function ws(sock) { return new Promise((resolve) => { let b = ''; let sent = false;
       sock.on('data', (d) => { b += d.toString('latin1'); if (!sent && b.includes('\\r\\n\\r\\n')) { sent = true; sock.write(frame('hello-ws')); }
         if (b.includes('hello-ws')) resolve({ status: b.split('\\r\\n')[0], echo: true }); });
       sock.on('error', () => resolve({ status: b.split('\\r\\n')[0], echo: false }));
       setTimeout(() => resolve({ status: b.split('\\r\\n')[0], echo: false }), 4000);
       sock.write(upgrade); }); }
     const t1 = await tunnel(443);
     const secure = tls.connect({ socket: t1, servername: 'allowed.test', ca: readFileSync(${JSON.stringify(core.cert)}) });
     await new Promise((r) => secure.once('secureConnect', r));
     const a = await ws(secure);
     const b = await ws(await tunnel(80));
     console.log(JSON.stringify({ wss: a.status, wssEcho: a.echo, ws: b.status, wsEcho: b.echo })); process.exit(0);`,
  );
  t.match(r.wss, /101 Switching Protocols/, 'wss:// through CONNECT :443');
  t.ok(r.wssEcho, 'frames flow over wss://');
  t.match(r.ws, /101 Switching Protocols/, 'ws:// through CONNECT :80 (HTTP inside a tunnel)');
  t.ok(r.wsEcho, 'frames flow over ws://');
});

t.test('inside a tunnel, a client that never finishes its headers is cut off (--headers-timeout)', async (t) => {
  const started = Date.now();
  const r = await raw(
    ['CONNECT allowed.test:8080 HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n', 'GET / HTTP/1.1\r\nHost: allowed.test\r\n'],
    { gapMs: 200, waitMs: 9000 },
  );
  t.ok(r.closed, `closed after ${Date.now() - started} ms`);
  t.ok(Date.now() - started < 8000, 'well before the idle timeout');
});

t.test('opaque protocols: only on a /tcp rule; SSH on a port rule; only TLS on a rule without a port', async (t) => {
  const named = await raw(['CONNECT allowed.test:2223 HTTP/1.1\r\nHost: allowed.test:2223\r\n\r\n', 'ping\r\n'], {
    gapMs: 300,
    waitMs: 2000,
  });
  t.match(named.reply, /^HTTP\/1\.1 200 /);
  t.notMatch(named.reply, /ping/, 'an unknown protocol on a port rule is not carried');
  t.ok(named.closed);
  t.match(await audited((e) => e.event === 'connect' && e.port === 2223 && e.reason === 'protocol-not-allowed'), { decision: 'deny' });
  const ssh = await raw(
    ['CONNECT allowed.test:2223 HTTP/1.1\r\nHost: allowed.test:2223\r\n\r\n', 'SSH-2.0-OpenSSH_9.6 test\r\n', 'ping\r\n'],
    { gapMs: 300, waitMs: 1500 },
  );
  t.match(ssh.reply, /BANNER 203\.0\.113\.10:2223\r\nSSH-2\.0-OpenSSH_9\.6 test\r\nping\r\n/, 'SSH passes on a port rule');
  const tcp = await raw(['CONNECT allowed.test:2222 HTTP/1.1\r\nHost: allowed.test:2222\r\n\r\n', 'ping\r\n'], {
    gapMs: 300,
    waitMs: 1500,
  });
  t.match(tcp.reply, /ping\r\n/, 'anything passes on a /tcp rule');
  const ssh443 = await raw(['CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n', 'SSH-2.0-x\r\n'], { gapMs: 300 });
  t.ok(ssh443.closed, 'SSH is not carried on a rule without a port');
  await audited((e) => e.event === 'connect' && e.port === 443 && e.reason === 'tls-required' && /SSH/.test(String(e.detail)));
});

/** A tunnel that speaks the given ClientHellos (hex) in turn, each after the server's answer. */
function tlsTunnel(port: number, hellos: Array<{ sni?: string; ext?: number }>) {
  return nodeIn<{ reply: string; closed: boolean }>(
    core.ns,
    `import net from 'node:net';
     import { clientHello } from ${JSON.stringify(TLS)};
     const hellos = ${JSON.stringify(hellos)};
     const s = net.connect(3128, '127.0.0.1');
     let reply = Buffer.alloc(0); let closed = false; let sent = 0; let established = false;
     const next = () => { const h = hellos[sent++]; if (h) s.write(clientHello(h.sni, h.ext ? [[h.ext, Buffer.from([0, 1, 2, 3])]] : [])); };
     s.on('data', (d) => { reply = Buffer.concat([reply, d]);
       if (!established && reply.includes('\\r\\n\\r\\n')) { established = true; next(); }
       else if (established && d[0] === 0x16) setTimeout(next, 100); });
     s.on('close', () => { closed = true; done(); });
     s.on('error', () => {});
     s.write('CONNECT allowed.test:${port} HTTP/1.1\\r\\nHost: allowed.test:${port}\\r\\n\\r\\n');
     const timer = setTimeout(done, 3000);
     function done() { clearTimeout(timer); console.log(JSON.stringify({ reply: reply.toString('latin1').split('\\r\\n')[0], closed })); process.exit(0); }`,
  );
}
const hellosSeen = (from: number) => seen(from).filter((x) => x.hello !== undefined);

t.test('TLS: inspection lasts until the handshake is past its hellos; ECH and ESNI are refused', async (t) => {
  let m = mark();
  const retryOther = await tlsTunnel(9443, [{ sni: 'allowed.test' }, { sni: 'evil.test' }]);
  t.ok(retryOther.closed, 'a second ClientHello naming another host after a HelloRetryRequest closes the tunnel');
  await settle();
  t.same(
    hellosSeen(m).map((x) => x.hello),
    [1],
    'the server never received the second ClientHello',
  );
  t.match(await audited((e) => e.event === 'connect' && e.port === 9443 && /second SNI/.test(String(e.detail))), {
    reason: 'sni-mismatch',
  });
  m = mark();
  const retrySame = await tlsTunnel(9443, [{ sni: 'allowed.test' }, { sni: 'allowed.test' }]);
  await settle();
  t.same(
    hellosSeen(m).map((x) => x.hello),
    [1, 2],
    'the same host in the second ClientHello passes',
  );
  t.notOk(retrySame.closed && hellosSeen(m).length < 2);
  for (const [ext, name] of [
    [0xfe0d, 'ECH'],
    [0xffce, 'ESNI'],
  ] as const) {
    m = mark();
    const r = await tlsTunnel(9443, [{ sni: 'allowed.test', ext }]);
    t.ok(r.closed, `${name}: closed`);
    await settle();
    t.same(hellosSeen(m), [], `${name}: the server never saw the ClientHello`);
  }
  t.match(await audited((e) => e.event === 'connect' && /Encrypted Client Hello/.test(String(e.detail))), { reason: 'sni-mismatch' });
  // A real TLS client through a port rule and the default rule still works end to end.
  t.equal((await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, 'https://allowed.test:8443/x'])).code, 200);
  t.equal((await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, '--tls-max', '1.2', 'https://allowed.test/'])).code, 200, 'TLS 1.2');
});

t.test('an error reply (431, 400) is read by a client still sending: lingering close, not a reset', async (t) => {
  // A client that keeps sending a large header for 3 s after the 431 is written.
  const parts = [
    'GET http://allowed.test:8080/ HTTP/1.1\r\nHost: allowed.test:8080\r\nX-Big: ',
    ...Array.from({ length: 60 }, () => 'a'.repeat(700)),
  ];
  const slow = await raw(parts, { gapMs: 50, waitMs: 8000, readAfterSending: true });
  t.match(slow.reply, /^HTTP\/1\.1 431 /, 'the 431 arrives');
  t.equal(slow.error, undefined, 'and the client is never reset while it is still sending');
  t.ok(slow.closed, 'the connection is closed afterwards');
  const slowBody = await raw(
    [
      'POST http://allowed.test:8080/ HTTP/1.1\r\nHost: allowed.test:8080\r\nConnection: content-length\r\nContent-Length: 42000\r\n\r\n',
      ...Array.from({ length: 60 }, () => 'b'.repeat(700)),
    ],
    { gapMs: 50, waitMs: 8000, readAfterSending: true },
  );
  t.match(slowBody.reply, /^HTTP\/1\.1 400 /, 'a refused request with a body still being sent gets its 400');
  t.equal(slowBody.error, undefined, 'and no reset');
  const hdr = join(core.dir, 'big-header.txt');
  writeFileSync(hdr, `X-Big: ${'a'.repeat(300_000)}\n`);
  const r = await curl(core.ns, ['-x', PROXY, '--limit-rate', '150k', '-H', `@${hdr}`, 'http://allowed.test:8080/']);
  t.equal(r.exitCode, 0, `curl sees the answer (${r.stderr.trim()})`);
  t.equal(r.code, 431, 'a large header gets 431');
  const body = join(core.dir, 'body.txt');
  writeFileSync(body, 'x'.repeat(300_000));
  const refused = await curl(core.ns, [
    '-x',
    PROXY,
    '--limit-rate',
    '150k',
    '-H',
    'Connection: content-length',
    '--data-binary',
    `@${body}`,
    'http://allowed.test:8080/',
  ]);
  t.equal(refused.exitCode, 0, `curl sees the 400 while sending its body (${refused.stderr.trim()})`);
  t.equal(refused.code, 400);
});
