// ATTACK5 probes that held (regression checks, passing): name spellings in CONNECT and absolute-form URLs,
// DNS question types and classes that must never be forwarded, and requests inside a plain-HTTP tunnel that
// would name another host. In process (test/harness/inproc.ts).
import t from 'tap';
import { RCODE, CLASS_IN, encode } from '../proxy/dns/wire.js';
import { parseAuthority, parseAbsoluteUrl } from '../proxy/http/target.js';
import { dnsQuery, proxyRequest, readToEnd, startInproc, type Inproc } from './harness/inproc.js';

const LOOP = '127.0.0.1';
let g: Inproc;
t.before(async () => {
  g = await startInproc({ zone: { 'allowed.test': { a: [LOOP] } }, rules: (p) => ['allowed.test', `allowed.test:${p}`] });
});
t.teardown(() => g?.close());

const connect = async (authority: string) => {
  const r = await proxyRequest(g.proxy.address.port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  r.socket.destroy();
  return r.status;
};

t.test('held: every IP spelling in a CONNECT authority is refused (ip-literal), never dialled', async (t) => {
  for (const host of [
    '127.0.0.1',
    '2130706433',
    '0177.0.0.1',
    '0x7f.1',
    '127.1',
    '0x7f000001',
    '[::ffff:127.0.0.1]',
    '[::1]',
    'allowed.0x1',
  ]) {
    t.equal(await connect(`${host}:${g.origin.port}`), 403, host);
  }
});

t.test('held: malformed authorities and ports are refused', async (t) => {
  for (const a of ['allowed.test:+443', 'allowed.test:443:80', 'allowed.test:', 'allowed.test:65536', 'allowed.test:0', 'allowed.test'])
    t.equal(parseAuthority(a).ok, false, a);
  t.same(parseAuthority('allowed.test:0443'), { ok: true, host: 'allowed.test', port: 443 }, 'a leading zero is the same port');
  for (const a of ['allowed.test..', 'allowed.test@evil.test', 'allowed.test%2e', 'allowed.test\\evil.test'])
    t.not(await connect(`${a}:${g.origin.port}`), 200, a);
});

t.test('held: Unicode spellings of the allowed name: refused by the proxy, resolved as the normalised name by DNS', async (t) => {
  for (const spelling of ['allo\u00adwed.test', '\uff41llowed.test', 'allowed\u3002test']) {
    t.equal(await connect(`${spelling}:${g.origin.port}`), 400, `CONNECT ${JSON.stringify(spelling)}: not a request Node reads`);
  }
  // DNS labels are bytes: a soft hyphen (latin1 0xAD) is dropped by IDNA mapping, so the query is the allowed name itself.
  const asked = g.upstream.asked.length;
  t.same((await dnsQuery(g.dns.udp.port, 'allo\u00adwed.test')).answers, [LOOP]);
  t.same(g.upstream.asked.slice(asked), ['allowed.test'], 'only the normalised name goes upstream');
  const u = parseAbsoluteUrl('http://allowed.test\\@evil.test/');
  t.match(u, { ok: true, host: 'allowed.test', path: '/@evil.test/' }, 'a backslash ends the authority (WHATWG), as origins read it');
});

t.test('held: inside a plain-HTTP tunnel, nothing names another host', async (t) => {
  const p = g.origin.port;
  const inside = async (req: string) => {
    const r = await proxyRequest(g.proxy.address.port, `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\n`);
    r.socket.write(req);
    return (await readToEnd(r.socket, r.rest, 3000)).toString();
  };
  const before = g.origin.requests.length;
  t.match(
    await inside('GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n'),
    /400 Bad Request[\s\S]*origin form/,
    'absolute form',
  );
  t.match(await inside('CONNECT evil.test:80 HTTP/1.1\r\nHost: allowed.test\r\n\r\n'), /400 Bad Request/, 'CONNECT in a tunnel');
  t.match(
    await inside(
      'GET / HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
    ),
    /400 Bad Request/,
    'h2c upgrade',
  );
  t.match(await inside('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), /400 Bad Request/, 'h2 prior knowledge');
  t.match(await inside('GET / HTTP/1.0\r\n\r\n'), /400 Bad Request/, 'HTTP/1.0 without Host');
  t.equal(g.origin.requests.length, before, 'the origin saw none of them');
});

t.test('held: DNS types other than A, other classes and opcodes are answered locally, never forwarded', async (t) => {
  const asked = g.upstream.asked.length;
  for (const type of [16, 33, 64, 65, 255, 28, 5, 2, 15, 12]) {
    const r = await dnsQuery(g.dns.udp.port, 'allowed.test', type);
    t.equal(r.rcode, RCODE.NOERROR, `type ${type}`);
    t.same(r.message.answers, [], `type ${type}: no records`);
  }
  const q = (klass: number, opcode = 0) =>
    encode({
      header: { id: 7, qr: 0, opcode, aa: 0, tc: 0, rd: 1, ra: 0, z: 0, ad: 0, cd: 0, rcode: 0 },
      questions: [{ name: 'allowed.test', type: 1, class: klass }],
      answers: [],
      authorities: [],
      additionals: [],
    });
  t.equal((await dnsQuery(g.dns.udp.port, q(3))).rcode, RCODE.REFUSED, 'class CH');
  t.equal((await dnsQuery(g.dns.udp.port, q(255))).rcode, RCODE.REFUSED, 'class ANY');
  t.equal((await dnsQuery(g.dns.udp.port, q(CLASS_IN, 2))).rcode, RCODE.NOTIMP, 'opcode STATUS');
  t.equal(g.upstream.asked.length, asked, 'nothing went upstream');
});
