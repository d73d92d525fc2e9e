// ATTACK8: inside an intercepted (credential-injection) tunnel, a request without Host, with two, or
// HTTP/1.0 without Host, never reaches the origin and never gets the credential; an unknown Expect is an
// audited 417. Held. Setup as in attack4-inject.test.ts.
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
const tmp = tempDir('codex-egress-attack8-');

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
