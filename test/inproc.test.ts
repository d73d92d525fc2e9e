// The in-process tier (test/harness/inproc.ts): the real proxy and DNS server on 127.0.0.1:0 with an
// injected upstream, address guard and audit sink. Each test asserts on the audit line the gateway
// wrote for what happened (smokescreen style). No root; seconds.
import t from 'tap';
import { DENY_HEADER } from '../proxy/http/proxy.js';
import { RCODE } from '../proxy/dns/wire.js';
import type { AuditEvent } from '../proxy/audit.js';
import { dnsQuery, proxyRequest, readToEnd, startInproc, type Inproc } from './harness/inproc.js';
import { clientHello } from './harness/tls.js';

const LOOP = '127.0.0.1';
const ZONE = {
  'allowed.test': { a: [LOOP] },
  'alias.test': { cname: 'target.cdn.test' },
  'target.cdn.test': { a: [LOOP] },
  'lan.test': { a: ['10.0.0.5'] },
  'loop2.test': { a: ['127.0.0.2'] },
  'mixed.test': { a: [LOOP, '192.168.1.1'] },
  'broken.test': { fail: true },
  'denied.test': { a: [LOOP] },
};

let g: Inproc;
const rules = (p: number) => [
  'allowed.test',
  `allowed.test:${p}`,
  `alias.test:${p}`,
  'lan.test',
  `lan.test:${p}`,
  'loop2.test',
  'mixed.test',
  'broken.test',
  `broken.test:${p}`,
  'missing.test',
];
t.before(async () => {
  g = await startInproc({ zone: ZONE, rules });
});
t.teardown(() => g?.close());

const dnsEvent =
  (name: string, qtype = 'A') =>
  (e: AuditEvent): e is Extract<AuditEvent, { event: 'dns' }> =>
    e.event === 'dns' && e.name === name && e.qtype === qtype;
const connectEvent =
  (host: string) =>
  (e: AuditEvent): e is Extract<AuditEvent, { event: 'connect' }> =>
    e.event === 'connect' && e.host === host;
const httpEvent =
  (host: string) =>
  (e: AuditEvent): e is Extract<AuditEvent, { event: 'http' }> =>
    e.event === 'http' && e.host === host;

t.test('DNS: an allowed name is answered from upstream and audited with its rule', async (t) => {
  const r = await dnsQuery(g.dns.udp.port, 'allowed.test');
  t.equal(r.rcode, RCODE.NOERROR);
  t.same(r.answers, [LOOP]);
  t.match(await g.audit.waitFor(dnsEvent('allowed.test')), {
    decision: 'allow',
    reason: 'allowed',
    rcode: 'NOERROR',
    answers: [LOOP],
    rule: { text: 'allowed.test', source: 'flag' },
  });
  for (const spelling of ['ALLOWED.test', 'allowed.test.', 'aLLoWeD.TeSt'])
    t.same((await dnsQuery(g.dns.udp.port, spelling)).answers, [LOOP], spelling);
  t.same((await dnsQuery(g.dns.udp.port, 'alias.test')).answers, [LOOP], 'through a CNAME');
});

t.test('DNS: a denied name is NXDOMAIN and never asked upstream', async (t) => {
  for (const name of ['denied.test', 'allowed.test.denied.test', 'evilallowed.test', 'x.allowed.test']) {
    t.equal((await dnsQuery(g.dns.udp.port, name)).rcode, RCODE.NXDOMAIN, name);
    t.notOk(g.upstream.asked.includes(name), `upstream never asked ${name}`);
  }
  t.match(await g.audit.waitFor(dnsEvent('denied.test')), { decision: 'deny', reason: 'not-allowlisted', rcode: 'NXDOMAIN' });
});

t.test('DNS: a dot inside a label is another name: FORMERR, not decided, not forwarded', async (t) => {
  const q = Buffer.concat([
    Buffer.from('424201000001000000000000', 'hex'),
    Buffer.from([12]),
    Buffer.from('allowed.test'),
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
  const asked = g.upstream.asked.length;
  const events = g.audit.events.length;
  t.equal((await dnsQuery(g.dns.udp.port, q)).rcode, RCODE.FORMERR);
  t.equal(g.upstream.asked.length, asked, 'nothing forwarded');
  t.equal(g.audit.events.length, events, 'nothing decided (the query was not read)');
});

t.test('DNS: AAAA and HTTPS of an allowed name are empty and not forwarded', async (t) => {
  const asked = g.upstream.asked.length;
  for (const type of [28, 65]) {
    const r = await dnsQuery(g.dns.udp.port, 'allowed.test', type);
    t.equal(r.rcode, RCODE.NOERROR);
    t.same(r.answers, []);
  }
  t.equal(g.upstream.asked.length, asked);
  t.match(await g.audit.waitFor(dnsEvent('allowed.test', 'AAAA')), { decision: 'allow', answers: [] });
});

t.test('DNS: an answer holding a non-public address is refused whole (the guard)', async (t) => {
  for (const name of ['lan.test', 'loop2.test', 'mixed.test']) {
    const r = await dnsQuery(g.dns.udp.port, name);
    t.equal(r.rcode, RCODE.REFUSED, name);
    t.same(r.answers, []);
    t.match(await g.audit.waitFor(dnsEvent(name)), { decision: 'deny', reason: 'private-address', rcode: 'REFUSED' });
  }
});

t.test('DNS: a failing upstream is SERVFAIL upstream-failed; an unknown name is NXDOMAIN nxdomain', async (t) => {
  t.equal((await dnsQuery(g.dns.udp.port, 'broken.test')).rcode, RCODE.SERVFAIL);
  t.match(await g.audit.waitFor(dnsEvent('broken.test')), { decision: 'deny', reason: 'upstream-failed', rcode: 'SERVFAIL' });
  t.equal((await dnsQuery(g.dns.udp.port, 'missing.test')).rcode, RCODE.NXDOMAIN);
  t.match(await g.audit.waitFor(dnsEvent('missing.test')), { decision: 'allow', reason: 'nxdomain' });
});

t.test('CONNECT: an allowed host:port tunnels to the resolved address; allow line, then tunnel_close', async (t) => {
  const host = `allowed.test:${g.origin.port}`;
  const r = await proxyRequest(g.proxy.address.port, `CONNECT ${host} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  t.equal(r.status, 200);
  r.socket.write(`GET /through HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const body = (await readToEnd(r.socket, r.rest)).toString();
  t.match(body, /^HTTP\/1\.1 200/);
  t.match(body, `hello ${host} /through`);
  t.match(await g.audit.waitFor(connectEvent('allowed.test')), {
    decision: 'allow',
    reason: 'allowed',
    port: g.origin.port,
    ip: LOOP,
    rule: { text: host },
  });
  const closed = await g.audit.waitFor((e) => e.event === 'tunnel_close' && e.host === 'allowed.test');
  t.match(closed, { ip: LOOP, port: g.origin.port });
  t.ok(closed.event === 'tunnel_close' && closed.bytes_up > 0 && closed.bytes_down > 0, 'bytes counted both ways');
});

t.test('CONNECT: refusals are answered with the reason and audited as denials', async (t) => {
  const p = g.origin.port;
  const cases: Array<[string, number, string, string]> = [
    [`denied.test:${p}`, 403, 'not-allowlisted', 'denied.test'],
    [`allowed.test:${p + 1 > 65535 ? p - 1 : p + 1}`, 403, 'port-not-allowed', 'allowed.test'],
    [`127.0.0.1:${p}`, 403, 'ip-literal', '127.0.0.1'],
    [`lan.test:${p}`, 403, 'private-address', 'lan.test'],
    [`broken.test:${p}`, 502, 'resolve-failed', 'broken.test'],
  ];
  for (const [authority, status, reason, host] of cases) {
    const r = await proxyRequest(g.proxy.address.port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    t.equal(r.status, status, authority);
    t.equal(r.headers[DENY_HEADER], reason, `${authority}: ${DENY_HEADER}`);
    r.socket.destroy();
    const e = await g.audit.waitFor((e) => e.event === 'connect' && e.reason === reason && e.host.startsWith(host));
    t.match(e, { decision: 'deny', status }, `${authority} audited`);
  }
  t.notOk(
    g.origin.requests.some((r) => r.host.startsWith('denied.test')),
    'nothing reached the origin for a denied host',
  );
});

t.test('CONNECT: a TLS ClientHello naming another host closes the tunnel (closed_by sni-mismatch)', async (t) => {
  const host = `allowed.test:${g.origin.port}`;
  const r = await proxyRequest(g.proxy.address.port, `CONNECT ${host} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  t.equal(r.status, 200);
  const before = g.origin.requests.length;
  r.socket.write(clientHello('evil.test'));
  await readToEnd(r.socket, r.rest);
  const e = await g.audit.waitFor((e) => e.event === 'tunnel_close' && e.closed_by === 'sni-mismatch');
  t.match(e, { host: 'allowed.test', bytes_up: 0 }, 'not a byte relayed upstream');
  t.equal(g.origin.requests.length, before);
});

t.test('CONNECT: plain HTTP inside a tunnel must name the tunnel host', async (t) => {
  const host = `allowed.test:${g.origin.port}`;
  const r = await proxyRequest(g.proxy.address.port, `CONNECT ${host} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  t.equal(r.status, 200);
  r.socket.write(`GET / HTTP/1.1\r\nHost: denied.test:${g.origin.port}\r\nConnection: close\r\n\r\n`);
  const body = (await readToEnd(r.socket, r.rest)).toString();
  t.match(body, /^HTTP\/1\.1 403/);
  t.match(await g.audit.waitFor((e) => e.event === 'http' && e.reason === 'host-mismatch'), {
    decision: 'deny',
    host: 'allowed.test',
    status: 403,
  });
  t.notOk(g.origin.requests.some((q) => q.host.startsWith('denied.test')));
});

t.test('plain HTTP: an absolute-form request is forwarded and audited with its status', async (t) => {
  const url = `http://allowed.test:${g.origin.port}/plain?x=1`;
  const r = await proxyRequest(
    g.proxy.address.port,
    `GET ${url} HTTP/1.1\r\nHost: allowed.test:${g.origin.port}\r\nConnection: close\r\n\r\n`,
  );
  t.equal(r.status, 200);
  t.match((await readToEnd(r.socket, r.rest)).toString(), `/plain?x=1`);
  t.match(await g.audit.waitFor(httpEvent('allowed.test')), { decision: 'allow', reason: 'allowed', method: 'GET', status: 200, ip: LOOP });
});

t.test('plain HTTP: refusals (Host, name, credentials) are answered and audited', async (t) => {
  const p = g.origin.port;
  const cases: Array<[string, string, number, string]> = [
    [`http://allowed.test:${p}/`, `denied.test:${p}`, 403, 'host-mismatch'],
    [`http://denied.test:${p}/`, `denied.test:${p}`, 403, 'not-allowlisted'],
    [`http://user:pw@allowed.test:${p}/`, `allowed.test:${p}`, 400, 'bad-request'],
    [`http://lan.test:${p}/`, `lan.test:${p}`, 403, 'private-address'],
  ];
  for (const [url, hostHeader, status, reason] of cases) {
    const before = g.audit.events.length;
    const r = await proxyRequest(g.proxy.address.port, `GET ${url} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
    t.equal(r.status, status, url);
    t.equal(r.headers[DENY_HEADER], reason, url);
    r.socket.destroy();
    const e = await g.audit.waitFor((e) => e.event === 'http' && e.reason === reason && g.audit.events.indexOf(e) >= before);
    t.match(e, { decision: 'deny', status }, `${url} audited`);
  }
});

t.test('a reload that removes the rule closes an open tunnel (closed_by policy-reload)', async (t) => {
  const host = `alias.test:${g.origin.port}`;
  const r = await proxyRequest(g.proxy.address.port, `CONNECT ${host} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  t.equal(r.status, 200);
  const ended = readToEnd(r.socket, r.rest);
  g.setRules(rules(g.origin.port).filter((x) => !x.startsWith('alias.test')));
  await ended;
  t.match(await g.audit.waitFor((e) => e.event === 'tunnel_close' && e.host === 'alias.test'), { closed_by: 'policy-reload' });
  t.equal((await dnsQuery(g.dns.udp.port, 'alias.test')).rcode, RCODE.NXDOMAIN, 'and DNS no longer answers it');
  g.setRules(rules(g.origin.port));
});

t.test('an exception in one connection closes that connection only, reported to the operator (not written to stderr)', async (t) => {
  let fail = true;
  const h = await startInproc({
    zone: ZONE,
    rules,
    health: () => {
      if (fail) throw new Error('health exploded');
      return { healthy: true };
    },
  });
  t.teardown(() => h.close());
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    written.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  t.teardown(() => void (process.stderr.write = write));
  const net = await import('node:net');
  const s = net.connect(h.proxy.address.port, '127.0.0.1');
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.equal((await readToEnd(s)).length, 0, 'that connection is closed without an answer');
  t.match(h.reports.join('\n'), /proxy: internal error, connection closed: Error: health exploded/, 'reported');
  t.notMatch(written.join(''), /health exploded/, 'nothing written to stderr by the library');
  fail = false;
  const ok = await proxyRequest(h.proxy.address.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.equal(ok.status, 200, 'the proxy keeps serving');
  ok.socket.destroy();
});
