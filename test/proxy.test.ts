// The HTTP/CONNECT proxy through real sockets: real curl (and raw-socket clients where curl cannot
// misbehave enough) against the real gateway and real HTTP(S) servers, inside a namespace of the test's own.
import t from 'tap';
import { startCore, curl, nodeIn, PROXY, WEB, type Core } from './harness/core.js';

let core: Core;
t.before(async () => {
  core = await startCore({ gatewayArgs: ['--hello-timeout', '2', '--headers-timeout', '2'] });
});
t.teardown(() => core?.close());

const via = (...args: string[]) => curl(core.ns, ['-x', PROXY, '--cacert', core.cert, ...args]);
const audited = (pred: (e: Record<string, unknown>) => boolean) => core.gateway.waitForAudit(pred);

/** Send raw bytes to the proxy and return what came back before it closed (or the time ran out). */
function raw(payload: string, opts: { waitMs?: number; after?: string } = {}) {
  return nodeIn<{ reply: string; closed: boolean }>(
    core.ns,
    `import net from 'node:net';
     const s = net.connect(3128, '127.0.0.1');
     let reply = ''; let closed = false;
     s.on('data', (d) => { reply += d.toString('latin1'); if (${JSON.stringify(opts.after ?? '')} && reply.includes('\\r\\n\\r\\n') && !s.sentAfter) { s.sentAfter = true; s.write(${JSON.stringify(opts.after ?? '')}); } });
     s.on('close', () => { closed = true; done(); });
     s.on('error', () => {});
     s.write(${JSON.stringify(payload)});
     const timer = setTimeout(done, ${opts.waitMs ?? 3000});
     function done() { clearTimeout(timer); console.log(JSON.stringify({ reply, closed })); process.exit(0); }`,
  );
}

t.test('allowed HTTPS through CONNECT works end to end and is audited, with the tunnel close', async (t) => {
  const r = await via('https://allowed.test/hello');
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.code, 200);
  t.equal(r.connect, 200);
  t.match(r.body, `hello from ${WEB}:443 host=allowed.test path=/hello`);
  t.match(await audited((e) => e.event === 'connect' && e.host === 'allowed.test' && e.decision === 'allow'), {
    v: 1,
    port: 443,
    ip: WEB,
    reason: 'allowed',
    rule: { text: 'allowed.test', source: 'flag', origin: '--allow' },
  });
  const close = await audited((e) => e.event === 'tunnel_close' && e.host === 'allowed.test');
  t.ok((close.bytes_up as number) > 100 && (close.bytes_down as number) > 100, 'bytes counted both ways');
  t.type(close.ms, 'number');
});

t.test('a denied name gets 403 with the reason, and its name is never resolved upstream', async (t) => {
  const r = await via('-D', '-', 'https://denied.test/');
  t.not(r.exitCode, 0);
  t.equal(r.connect, 403);
  t.match(r.body, /x-codex-egress-deny: not-allowlisted/i);
  t.match(await audited((e) => e.event === 'connect' && e.host === 'denied.test'), { decision: 'deny', reason: 'not-allowlisted' });
  t.notOk(
    core.world.queries().some((q) => q.name === 'denied.test'),
    'the upstream never saw denied.test',
  );
  const plain = await via('-i', 'http://denied.test/');
  t.equal(plain.code, 403);
  t.match(plain.body, /x-codex-egress-deny: not-allowlisted/i);
  t.match(plain.body, /codex-egress: request blocked \(not-allowlisted\)/);
});

t.test('IP literals are refused in every spelling, CONNECT and plain', async (t) => {
  for (const target of [`${WEB}:443`, '[::ffff:203.0.113.10]:443', '3405803786:443', '0xcb.0.113.10:443', '203.0.113.10.:443']) {
    const r = await raw(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    t.match(r.reply, /^HTTP\/1\.1 403 /, target);
    t.match(r.reply, /x-codex-egress-deny: ip-literal/, `${target}: reason`);
  }
  for (const url of [`http://${WEB}/`, 'http://3405803786/', 'http://0xcb.0.113.10/', 'http://[::ffff:cb00:710a]/']) {
    const host = new URL(url).host;
    const r = await raw(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    t.match(r.reply, /^HTTP\/1\.1 403 /, url);
    t.match(r.reply, /x-codex-egress-deny: ip-literal/, `${url}: reason`);
  }
});

t.test('ports: 443 by default, others only when a rule names them', async (t) => {
  const wrong = await via('https://allowed.test:8444/');
  t.equal(wrong.connect, 403);
  t.match(await audited((e) => e.event === 'connect' && e.port === 8444), { decision: 'deny', reason: 'port-not-allowed' });
  const named = await via('https://allowed.test:8443/x');
  t.equal(named.code, 200, 'allowed.test:8443 is in the allowlist');
  t.match(named.body, `${WEB}:8443`);
  const r = await raw('CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n');
  t.match(r.reply, /403[\s\S]*port-not-allowed/, 'CONNECT to port 80 is not plain HTTP');
});

t.test('a ClientHello naming another host closes the tunnel (SNI mismatch)', async (t) => {
  // curl asks the proxy for allowed.test:443 but speaks TLS for denied.test (served at the same address).
  const r = await via('--connect-to', 'denied.test:443:allowed.test:443', 'https://denied.test/');
  t.not(r.exitCode, 0, 'the request failed');
  t.equal(r.connect, 200, 'the CONNECT itself was allowed');
  t.notMatch(r.body, /hello from/);
  t.match(await audited((e) => e.event === 'connect' && e.reason === 'sni-mismatch'), { decision: 'deny', host: 'allowed.test' });
  t.match(await audited((e) => e.event === 'tunnel_close' && e.closed_by === 'sni-mismatch'), { bytes_up: 0 });
});

t.test('a CONNECT to 443 that does not start with TLS is closed; a named non-TLS port works', async (t) => {
  const r = await raw('CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n', {
    after: 'GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n',
  });
  t.match(r.reply, /^HTTP\/1\.1 200 /);
  t.notMatch(r.reply, /hello from/, 'nothing from the server');
  t.ok(r.closed, 'closed');
  await audited((e) => e.event === 'connect' && e.reason === 'tls-required');
  const silent = await raw('CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n', { waitMs: 5000 });
  t.ok(silent.closed, 'a client that never sends a ClientHello is cut off after --hello-timeout');
  const banner = await raw('CONNECT allowed.test:2222 HTTP/1.1\r\nHost: allowed.test:2222\r\n\r\n', { after: 'ping\r\n', waitMs: 1500 });
  t.match(banner.reply, /BANNER 203\.0\.113\.10:2222\r\nping\r\n/, 'server-speaks-first protocol on a named port, then echo');
});

t.test('plain HTTP: forwarded in origin form, proxy headers stripped, each keep-alive request decided', async (t) => {
  const r = await via(
    '-H',
    'Proxy-Authorization: Basic c2VjcmV0',
    '-H',
    'X-Hop: 1',
    '-H',
    'Connection: X-Hop',
    'http://allowed.test/p?q=1',
  );
  t.equal(r.code, 200);
  t.match(r.body, `hello from ${WEB}:80 host=allowed.test path=/p?q=1`);
  t.notMatch(r.body, /proxy-authorization|proxy-connection|x-hop/, 'hop-by-hop and Proxy-* headers are not forwarded');
  t.match(await audited((e) => e.event === 'http' && e.host === 'allowed.test' && e.decision === 'allow'), {
    method: 'GET',
    status: 200,
    ip: WEB,
  });
  // Two requests on one keep-alive connection: the second names a denied host.
  const two = await raw(
    'GET http://allowed.test/one HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET http://denied.test/two HTTP/1.1\r\nHost: denied.test\r\n\r\n',
  );
  t.match(two.reply, /hello from 203\.0\.113\.10:80 host=allowed\.test path=\/one/);
  t.match(two.reply, /403 Forbidden[\s\S]*not-allowlisted/, 'the second request on the same connection is refused');
  t.notMatch(two.reply, /path=\/two/);
});

t.test('plain HTTP: the Host header must name the URL host, exactly once', async (t) => {
  const mismatch = await via('-H', 'Host: denied.test', 'http://allowed.test/');
  t.equal(mismatch.code, 403);
  t.match(await audited((e) => e.event === 'http' && e.reason === 'host-mismatch'), { decision: 'deny' });
  const twice = await raw('GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n');
  t.match(twice.reply, /^HTTP\/1\.1 400 /);
  const httpsForm = await raw('GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
  t.match(httpsForm.reply, /^HTTP\/1\.1 400 /, 'absolute-form https:// is not proxied');
  const creds = await raw('GET http://user:pw@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
  t.match(creds.reply, /^HTTP\/1\.1 400 /, 'credentials in the URL are refused');
});

t.test('names that resolve to private or metadata addresses are refused by the proxy', async (t) => {
  for (const name of ['lan.test', 'meta.test', 'mixed.test']) {
    const r = await via('-D', '-', `https://${name}/`);
    t.equal(r.connect, 403, name);
    t.match(r.body, /x-codex-egress-deny: private-address/i);
    const plain = await via(`http://${name}/`);
    t.equal(plain.code, 403, `${name} plain`);
    t.notMatch(plain.body, /hello from/);
  }
});

t.test('origin-form requests get 400; /healthz reports status', async (t) => {
  const r = await curl(core.ns, ['-i', 'http://127.0.0.1:3128/']);
  t.equal(r.code, 400);
  const h = await curl(core.ns, ['http://127.0.0.1:3128/healthz']);
  t.equal(h.code, 200);
  t.match(JSON.parse(h.body), { healthy: true, dns: true, proxy: true, firewall: { up: false, disabled: true } });
});

t.test('bad input gets a clear error and never a crash: garbage, huge headers, slow headers', async (t) => {
  const garbage = await raw('\u0000\u0001GARBAGE\r\n\r\n');
  t.match(garbage.reply, /^HTTP\/1\.1 400 /);
  const huge = await raw(`GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`);
  t.match(huge.reply, /^HTTP\/1\.1 431 /);
  const badConnect = await raw('CONNECT allowed.test HTTP/1.1\r\n\r\n');
  t.match(badConnect.reply, /^HTTP\/1\.1 400 /, 'CONNECT without a port');
  const slow = await raw('GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n', { waitMs: 6000 });
  t.ok(slow.closed, 'a client that never finishes its headers is cut off (--headers-timeout)');
  t.match(slow.reply, /^HTTP\/1\.1 408 |^$/);
  t.notOk(core.gateway.proc.exited, 'the gateway is still running');
  t.equal((await via('https://allowed.test/')).code, 200, 'and still serving');
});

t.test('WebSocket upgrade through plain HTTP: frames flow, and an active stream outlives the idle timeout', async (t) => {
  const g = await core.extraGateway(['--dns-port', '5310', '--proxy-port', '3310', '--upstream', '198.51.100.53', '--idle-timeout', '1']);
  const r = await nodeIn<{ status: string; echoes: number; closedAfterIdle: boolean; aliveMs: number }>(
    core.ns,
    `import net from 'node:net';
     const s = net.connect(3310, '127.0.0.1');
     let buf = ''; let status = ''; let echoes = 0; const started = Date.now(); let sending;
     const frame = (text) => { const p = Buffer.from(text); const mask = Buffer.from([1, 2, 3, 4]);
       return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]); };
     s.on('data', (d) => {
       buf += d.toString('latin1');
       if (!status && buf.includes('\\r\\n\\r\\n')) {
         status = buf.split('\\r\\n')[0];
         let n = 0;
         sending = setInterval(() => { if (n++ < 8) s.write(frame('ping' + n)); else clearInterval(sending); }, 300);
       }
       echoes = (buf.match(/ping\\d/g) || []).length;
     });
     s.on('error', () => {});
     s.on('close', () => { console.log(JSON.stringify({ status, echoes, closedAfterIdle: true, aliveMs: Date.now() - started })); process.exit(0); });
     s.write('GET http://allowed.test/ws HTTP/1.1\\r\\nHost: allowed.test\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n');
     setTimeout(() => { console.log(JSON.stringify({ status, echoes, closedAfterIdle: false, aliveMs: Date.now() - started })); process.exit(0); }, 8000);`,
  );
  t.match(r.status, /101 Switching Protocols/);
  t.equal(r.echoes, 8, 'every frame echoed through the proxy');
  t.ok(r.aliveMs > 2400, `the stream stayed open while active (${r.aliveMs} ms, idle timeout 1 s)`);
  t.ok(r.closedAfterIdle, 'and was closed once idle');
  await g.stop();
});

t.test('connections per client are limited', async (t) => {
  const g = await core.extraGateway([
    '--dns-port',
    '5311',
    '--proxy-port',
    '3311',
    '--upstream',
    '198.51.100.53',
    '--max-connections',
    '3',
  ]);
  const r = await nodeIn<{ open: number; refused: number }>(
    core.ns,
    `import net from 'node:net';
     let open = 0, refused = 0; const socks = [];
     for (let i = 0; i < 5; i++) {
       const s = net.connect(3311, '127.0.0.1'); socks.push(s);
       s.on('error', () => {});
       // The two over the limit are answered (429, then closed): reading lets their close arrive.
       s.resume();
       s.on('close', () => refused++);
     }
     setTimeout(() => { open = socks.filter((s) => !s.destroyed).length; console.log(JSON.stringify({ open, refused })); process.exit(0); }, 800);`,
  );
  t.same(r, { open: 3, refused: 2 });
  await g.stop();
});
