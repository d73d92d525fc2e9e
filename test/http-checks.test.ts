// In-process table tests (no root, no sockets) for the proxy's pure checks: the first-bytes state
// machine, request and response framing, host-name spelling, /tcp rules; and the last-resort handler
// in a child process.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FirstBytes, type Verdict } from '../proxy/http/firstbytes.js';
import { checkRequestHead, checkResponseHead } from '../proxy/http/framing.js';
import { spellsName, hostHeaderMatches } from '../proxy/http/target.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { clientHello, serverHello } from './harness/tls.js';
import { ROOT } from './harness/world.js';

const kinds = (vs: Verdict[]) => vs.map((v) => v.kind);

t.test('host names compare as ASCII letters, digits, dots and hyphens only', async (t) => {
  for (const ok of ['allowed.test', 'ALLOWED.Test', 'allowed.test.']) t.ok(spellsName(ok, 'allowed.test'), ok);
  for (const no of [
    'allowed.test..',
    'allo\u00adwed.test',
    '\uff41llowed.test',
    'allowed.test\u0000',
    'xn--allowed.test',
    'allowed.test ',
    '',
    '.',
    'allowed%2etest',
    'evil.test',
  ]) {
    t.notOk(spellsName(no, 'allowed.test'), JSON.stringify(no));
  }
  t.ok(hostHeaderMatches('allowed.test:8080', 'allowed.test', 8080));
  t.notOk(hostHeaderMatches('allowed.test', 'allowed.test', 8080), 'no port means 80 for plain HTTP');
  t.ok(hostHeaderMatches('allowed.test', 'allowed.test', 8080, true), 'inside a tunnel the port is optional');
  t.notOk(hostHeaderMatches('allowed.test:81', 'allowed.test', 8080, true), 'but a wrong one is refused');
  t.notOk(hostHeaderMatches('allowed.test@evil.test', 'allowed.test', 80));
});

t.test('rules: host:port/tcp lets a tunnel carry any protocol; the decision says what a tunnel carries', async (t) => {
  const r = parseRuleList(['github.com:22', 'db.example.com:5432/tcp', 'example.com'], 'flag', '--allow');
  t.ok(r.ok);
  t.same(r.ok && r.rules.map((x) => [x.name, x.port, x.anyProtocol]), [
    ['github.com', 22, false],
    ['db.example.com', 5432, true],
    ['example.com', undefined, false],
  ]);
  for (const bad of ['example.com/tcp', '!example.com:22/tcp', 'example.com:22/udp', 'example.com:22/tcp/x']) {
    t.notOk(parseRuleList([bad], 'flag', '--allow').ok, `${bad} is refused`);
  }
  const m = mergeSources({ defaults: false, flags: ['github.com:22', 'db.example.com:5432/tcp', 'example.com'] });
  t.ok(m.ok);
  if (!m.ok) return;
  t.match(m.allowlist.decide('example.com', 'connect', 443), { allow: true, carries: 'tls' });
  t.match(m.allowlist.decide('github.com', 'connect', 22), { allow: true, carries: 'named' });
  t.match(m.allowlist.decide('db.example.com', 'connect', 5432), { allow: true, carries: 'any' });
});

t.test('first bytes: TLS must name the host in every ClientHello, until the server has said hello', async (t) => {
  const host = 'allowed.test';
  const ok = new FirstBytes(host, 'tls');
  const ch = clientHello(host);
  t.same(kinds([ok.client(ch)]), ['forward']);
  t.same(kinds([ok.fromServer(serverHello(false))]), ['pass'], 'a real ServerHello ends the inspection');

  const split = new FirstBytes(host, 'tls');
  t.same(
    kinds([split.client(ch.subarray(0, 7)), split.client(ch.subarray(7, 40)), split.client(ch.subarray(40))]),
    ['need-more', 'need-more', 'forward'],
    'a ClientHello in pieces is held until complete',
  );

  const other = new FirstBytes(host, 'tls').client(clientHello('evil.test'));
  t.match(other, { kind: 'reject', reason: 'sni-mismatch' });
  t.match(new FirstBytes(host, 'tls').client(clientHello(undefined)), { kind: 'reject', reason: 'sni-mismatch' }, 'no SNI at all');
  t.match(new FirstBytes(host, 'tls').client(clientHello('ALLOWED.TEST.')), { kind: 'forward' }, 'case and one trailing dot');
  t.match(new FirstBytes(host, 'tls').client(clientHello('allo\u00adwed.test')), { kind: 'reject' }, 'a soft hyphen is not mapped away');

  for (const [type, name] of [
    [0xfe0d, 'ECH'],
    [0xfe0a, 'ECH draft'],
    [0xffce, 'ESNI'],
    [0xfd00, 'ech_outer_extensions'],
  ] as const) {
    const v = new FirstBytes(host, 'tls').client(clientHello(host, [[type, Buffer.from([0, 1, 2, 3])]]));
    t.match(v, { kind: 'reject', reason: 'sni-mismatch', detail: /hides the server name/ }, name);
  }

  // HelloRetryRequest: the second ClientHello is checked as the first was.
  const retry = new FirstBytes(host, 'tls');
  t.same(kinds([retry.client(ch), retry.fromServer(serverHello(true))]), ['forward', 'need-more']);
  t.match(
    retry.client(clientHello('evil.test')),
    { kind: 'reject', reason: 'sni-mismatch', detail: /second SNI/ },
    'a second ClientHello naming another host',
  );
  const retryOk = new FirstBytes(host, 'tls');
  const ccs = Buffer.from([0x14, 3, 3, 0, 1, 1]);
  t.same(
    kinds([
      retryOk.client(ch),
      retryOk.fromServer(serverHello(true)),
      retryOk.client(Buffer.concat([ccs, ch])),
      retryOk.fromServer(serverHello(false)),
    ]),
    ['forward', 'need-more', 'forward', 'pass'],
  );
  const noRetry = new FirstBytes(host, 'tls');
  noRetry.client(ch);
  t.match(noRetry.client(clientHello(host)), { kind: 'reject', detail: /without a HelloRetryRequest/ }, 'two ClientHellos without a retry');
  const twice = new FirstBytes(host, 'tls');
  twice.client(ch);
  twice.fromServer(serverHello(true));
  twice.client(ch);
  t.match(twice.fromServer(serverHello(true)), { kind: 'reject', detail: /second HelloRetryRequest/ });
  const notTls = new FirstBytes(host, 'named');
  notTls.client(ch);
  t.match(
    notTls.fromServer(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')),
    { kind: 'reject', reason: 'tls-required' },
    'a server that does not answer TLS with TLS',
  );
  const garbage = new FirstBytes(host, 'tls');
  t.match(garbage.client(Buffer.concat([ch, Buffer.from('GET / HTTP/1.1\r\n')])), { kind: 'reject' }, 'non-TLS bytes after the hello');
  t.match(new FirstBytes(host, 'tls').timeout(), { kind: 'reject', reason: 'tls-required' });
});

t.test('first bytes: HTTP and SSH on port rules, anything only on /tcp rules', async (t) => {
  const host = 'allowed.test';
  t.match(
    new FirstBytes(host, 'named').client(Buffer.from('GET / HTTP/1.1\r\nHost: evil\r\n\r\n')),
    { kind: 'http' },
    'HTTP goes to the per-request checks',
  );
  t.match(
    new FirstBytes(host, 'named').client(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')),
    { kind: 'http' },
    'so does h2 prior knowledge (the HTTP/1 parser refuses it)',
  );
  t.match(
    new FirstBytes(host, 'tls').client(Buffer.from('GET / HTTP/1.1\r\n')),
    { kind: 'reject', reason: 'tls-required' },
    'not on a TLS-only rule',
  );
  const g = new FirstBytes(host, 'named');
  t.same(kinds([g.client(Buffer.from('GE')), g.client(Buffer.from('T /'))]), ['need-more', 'http']);
  t.match(new FirstBytes(host, 'named').client(Buffer.from('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n')), { kind: 'pass' }, 'SSH on a port rule');
  const s = new FirstBytes(host, 'named');
  t.same(kinds([s.client(Buffer.from('SS')), s.client(Buffer.from('H-2.0-x')), s.client(Buffer.from('\r\n'))]), [
    'need-more',
    'need-more',
    'pass',
  ]);
  t.match(
    new FirstBytes(host, 'named').client(Buffer.from('SSH-2.0-\r\nGET / HTTP/1.1\r\n')),
    { kind: 'reject' },
    'an empty SSH software version',
  );
  t.match(
    new FirstBytes(host, 'tls').client(Buffer.from('SSH-2.0-x\r\n')),
    { kind: 'reject', reason: 'tls-required' },
    'SSH not on a TLS-only rule',
  );
  for (const bytes of ['\r\nGET / HTTP/1.1\r\nHost: evil\r\n\r\n', 'ping\r\n', '\u0005\u0001\u0000', 'x'.repeat(40)]) {
    t.match(
      new FirstBytes(host, 'named').client(Buffer.from(bytes, 'latin1')),
      { kind: 'reject', reason: 'protocol-not-allowed' },
      `${JSON.stringify(bytes.slice(0, 12))} on a port rule`,
    );
    // On a /tcp rule a request after an empty line is HTTP (servers must skip the empty line),
    // and a line of text waits for its end (it may still name an HTTP version); other bytes pass.
    const onTcp = bytes.startsWith('\r\n') ? 'http' : bytes.startsWith('x') ? 'need-more' : 'pass';
    t.match(
      new FirstBytes(host, 'any').client(Buffer.from(bytes, 'latin1')),
      { kind: onTcp },
      `${JSON.stringify(bytes.slice(0, 12))} on a /tcp rule`,
    );
  }
  t.match(
    new FirstBytes(host, 'any').client(Buffer.from(`${'x'.repeat(40)}\r\n`)),
    { kind: 'pass' },
    'a line of text that names no HTTP version passes on a /tcp rule',
  );
  t.match(
    new FirstBytes(host, 'any').client(Buffer.from('x'.repeat(70_000))),
    { kind: 'reject' },
    'a first line that never ends is refused on a /tcp rule, never passed',
  );
  t.match(
    new FirstBytes(host, 'any').client(Buffer.from(`${'A'.repeat(40)} / HTTP/1.1\r\n`)),
    { kind: 'http' },
    'a long method is HTTP on a /tcp rule',
  );
  t.match(
    new FirstBytes(host, 'named').client(Buffer.from('SSH-2.0-x / HTTP/1.1\r\n')),
    { kind: 'http' },
    'an SSH line that is a request line goes to the HTTP checks',
  );
  t.match(
    new FirstBytes(host, 'any').client(clientHello('evil.test')),
    { kind: 'reject', reason: 'sni-mismatch' },
    'TLS on a /tcp rule still names the host',
  );
  t.match(new FirstBytes(host, 'any').timeout(), { kind: 'pass' }, 'a silent client (server speaks first) on a /tcp rule');
  t.match(new FirstBytes(host, 'named').timeout(), { kind: 'reject', reason: 'protocol-not-allowed' });
});

t.test('request framing: exactly one reading, or 400', async (t) => {
  const h = (...kv: string[]) => ['Host', 'allowed.test', ...kv];
  const refused: Array<[string, string, string[]]> = [
    ['Connection names content-length', 'GET', h('Connection', 'content-length', 'Content-Length', '41')],
    ['mixed case', 'GET', h('Connection', 'Content-LENGTH', 'Content-Length', '4')],
    ['transfer-encoding in a list', 'POST', h('Connection', 'keep-alive, Transfer-Encoding', 'Transfer-Encoding', 'chunked')],
    ['host', 'GET', h('Connection', 'HOST')],
    ['in a second Connection header', 'GET', h('Connection', 'close', 'connection', ' host ')],
    ['both framings', 'POST', h('Content-Length', '3', 'Transfer-Encoding', 'chunked')],
    ['two lengths', 'POST', h('Content-Length', '3', 'Content-Length', '3')],
    ['a length list', 'POST', h('Content-Length', '3, 3')],
    ['a signed length', 'POST', h('Content-Length', '+3')],
    ['gzip, chunked', 'POST', h('Transfer-Encoding', 'gzip, chunked')],
    ['gzip', 'POST', h('Transfer-Encoding', 'gzip')],
    ['two encodings', 'POST', h('Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked')],
    ['no Host', 'GET', ['X', 'y']],
    ['two Hosts', 'GET', h('Host', 'evil.test')],
  ];
  for (const [what, method, raw] of refused) t.match(checkRequestHead(method, '1.1', raw, false), { ok: false }, what);
  t.match(checkRequestHead('POST', '1.0', h('Transfer-Encoding', 'chunked'), false), { ok: false }, 'chunked in HTTP/1.0');
  t.match(
    checkRequestHead('GET', '1.1', h('Upgrade', 'websocket', 'Connection', 'Upgrade', 'Content-Length', '5'), true),
    { ok: false },
    'an upgrade with a body',
  );

  for (const method of ['GET', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH']) {
    const c = checkRequestHead(method, '1.1', h('Transfer-Encoding', 'chunked'), false);
    t.match(c, { ok: true, framing: 'chunked' }, `${method} keeps its chunked body`);
    t.ok(c.ok && c.headers.includes('Transfer-Encoding'), `${method}: Transfer-Encoding forwarded`);
    const l = checkRequestHead(method, '1.1', h('Content-Length', '7'), false);
    t.ok(l.ok && l.headers.join('|').includes('Content-Length|7'), `${method}: Content-Length forwarded`);
  }
  const stripped = checkRequestHead(
    'GET',
    '1.1',
    h('Connection', 'close, X-Hop', 'X-Hop', '1', 'Proxy-Authorization', 'x', 'Keep-Alive', '5', 'TE', 'trailers', 'X-Keep', '1'),
    false,
  );
  t.same(
    stripped.ok && stripped.headers,
    ['Host', 'allowed.test', 'X-Keep', '1'],
    'hop-by-hop and listed headers removed, the rest in order',
  );
  const post = checkRequestHead('POST', '1.1', h(), false);
  t.same(
    post.ok && post.headers,
    ['Host', 'allowed.test', 'Content-Length', '0'],
    'a body-less POST says so instead of getting a chunked body',
  );
  const ws = checkRequestHead('GET', '1.1', h('Upgrade', 'websocket', 'Connection', 'keep-alive, Upgrade', 'Sec-WebSocket-Key', 'k'), true);
  t.same(ws.ok && ws.headers, ['Host', 'allowed.test', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k', 'Connection', 'Upgrade']);
});

t.test('response heads: status 100-599 in its place, no control bytes, hop-by-hop removed', async (t) => {
  for (const status of [0, 99, 600, 999, 100, 103, 101, NaN])
    t.match(checkResponseHead(status, 'X', [], false), { ok: false }, `status ${status}`);
  t.match(checkResponseHead(200, 'O\u0001K', [], false), { ok: false }, 'control byte in the reason');
  t.match(checkResponseHead(200, 'OK\r\nX: y', [], false), { ok: false });
  t.match(checkResponseHead(200, 'OK', ['X-Bad', 'a\u0001b'], false), { ok: false });
  t.match(checkResponseHead(200, 'OK', ['Bad Name', 'v'], false), { ok: false });
  t.match(checkResponseHead(101, 'Switching Protocols', ['Upgrade', 'websocket', 'Connection', 'Upgrade'], true), {
    ok: true,
    headers: ['Upgrade', 'websocket', 'Connection', 'Upgrade'],
  });
  t.same(
    checkResponseHead(
      200,
      'OK',
      [
        'Connection',
        'keep-alive, X-Hop',
        'X-Hop',
        '1',
        'Transfer-Encoding',
        'chunked',
        'Keep-Alive',
        'timeout=5',
        'Content-Length',
        '3',
        'X-A',
        'b',
      ],
      false,
    ),
    {
      ok: true,
      headers: ['Content-Length', '3', 'X-A', 'b'],
    },
  );
});

t.test('last resort: an exception in one connection closes it and the gateway keeps serving; anywhere else it exits 70', async (t) => {
  const mod = join(ROOT, 'dist', 'proxy', 'lastresort.js');
  const script = (where: 'connection' | 'outside') => `
    import net from 'node:net';
    import { installLastResort, withConnectionScope } from ${JSON.stringify(mod)};
    installLastResort({ log: (l) => console.error(l.split('\\n')[0]), exit: (c) => process.exit(c) });
    const srv = net.createServer((s) => {
      withConnectionScope(s, () => {
        s.once('data', () => setTimeout(() => { throw new Error('boom in a connection'); }, 5));
      });
    }).listen(0, '127.0.0.1', async () => {
      const port = srv.address().port;
      const closed = await new Promise((r) => { const c = net.connect(port, '127.0.0.1'); c.on('close', () => r(true)); c.on('error', () => {}); c.write('x'); });
      if (${where === 'outside'}) setTimeout(() => { throw new Error('boom outside'); }, 5);
      else setTimeout(() => { const c = net.connect(port, '127.0.0.1', () => { console.log('still serving', closed); process.exit(0); }); }, 50);
    });`;
  const inside = spawnSync(process.execPath, ['--input-type=module', '-e', script('connection')], { encoding: 'utf8', timeout: 20_000 });
  t.equal(inside.status, 0, inside.stderr);
  t.match(inside.stdout, /still serving true/, 'the failing connection was closed, a new one accepted');
  t.match(inside.stderr, /internal error \(uncaught exception\) in one connection/);
  const outside = spawnSync(process.execPath, ['--input-type=module', '-e', script('outside')], { encoding: 'utf8', timeout: 20_000 });
  t.equal(outside.status, 70, 'an exception outside any connection stops the process non-zero');
  t.match(outside.stderr, /outside any connection; exiting with status 70/);
  t.ok(execFileSync, 'child processes used');
});
