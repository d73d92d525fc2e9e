// Table tests (in process, no sockets) for the readers of what a client names: the CONNECT authority,
// the absolute-form URL and the TLS ClientHello's server name. Each row is an input and what the
// reader must make of it; the spellings that could smuggle another host are rows of their own.
import t from 'tap';
import { parseAbsoluteUrl, parseAuthority } from '../proxy/http/target.js';
import { parseClientHello } from '../proxy/http/clienthello.js';
import { clientHello } from './harness/tls.js';

t.test('parseAuthority: host:port, the port required and in range', async (t) => {
  const table: Array<[string, { host: string; port: number } | 'bad']> = [
    ['allowed.test:443', { host: 'allowed.test', port: 443 }],
    ['ALLOWED.test:8443', { host: 'ALLOWED.test', port: 8443 }], // case is the policy's business (normalised there)
    ['allowed.test:1', { host: 'allowed.test', port: 1 }],
    ['allowed.test:65535', { host: 'allowed.test', port: 65535 }],
    ['[2001:db8::1]:443', { host: '[2001:db8::1]', port: 443 }],
    ['203.0.113.7:443', { host: '203.0.113.7', port: 443 }], // an IP literal: refused later by decide()
    ['allowed.test', 'bad'],
    ['allowed.test:', 'bad'],
    ['allowed.test:0', 'bad'],
    ['allowed.test:65536', 'bad'],
    ['allowed.test:443:443', 'bad'],
    ['allowed.test:+443', 'bad'],
    ['allowed.test:0x1bb', 'bad'],
    ['allowed.test: 443', 'bad'],
    ['allowed.test:443 ', 'bad'],
    ['allowed.test:000000443', 'bad'],
    [':443', 'bad'],
    ['2001:db8::1:443', 'bad'],
    ['[2001:db8::1]443', 'bad'],
    ['[allowed.test]x:443', 'bad'],
    ['user@allowed.test:443', { host: 'user@allowed.test', port: 443 }], // read as a host; decide() refuses it (invalid-host)
  ];
  for (const [input, want] of table) {
    const r = parseAuthority(input);
    if (want === 'bad') t.equal(r.ok, false, JSON.stringify(input));
    else t.same(r, { ok: true, ...want }, JSON.stringify(input));
  }
});

t.test('parseAbsoluteUrl: http:// only, no credentials, the port defaulting to 80', async (t) => {
  const table: Array<[string, { host: string; port: number; path: string } | string]> = [
    ['http://allowed.test/', { host: 'allowed.test', port: 80, path: '/' }],
    ['HTTP://Allowed.Test:8080/a?b=c', { host: 'allowed.test', port: 8080, path: '/a?b=c' }],
    ['http://allowed.test', { host: 'allowed.test', port: 80, path: '/' }],
    ['http://allowed.test:80/x', { host: 'allowed.test', port: 80, path: '/x' }],
    ['http://allowed.test/a#frag', { host: 'allowed.test', port: 80, path: '/a' }],
    ['http://203.0.113.7/', { host: '203.0.113.7', port: 80, path: '/' }],
    ['http://[2001:db8::1]/', { host: '[2001:db8::1]', port: 80, path: '/' }],
    ['https://allowed.test/', 'only absolute-form'],
    ['ws://allowed.test/', 'only absolute-form'],
    ['/relative', 'only absolute-form'],
    ['allowed.test/', 'only absolute-form'],
    ['http:/allowed.test/', 'only absolute-form'],
    ['http://user:pw@allowed.test/', 'credentials'],
    ['http://user@allowed.test/', 'credentials'],
    ['http://allowed.test:99999/', 'malformed'],
    ['http://allo wed.test/', 'malformed'],
    ['http:///', 'malformed'],
  ];
  for (const [input, want] of table) {
    const r = parseAbsoluteUrl(input);
    if (typeof want === 'string') t.match(r, { ok: false, detail: new RegExp(want) }, JSON.stringify(input));
    else t.same(r, { ok: true, ...want }, JSON.stringify(input));
  }
  // WHATWG URL parsing maps some spellings before the policy sees them: the host that comes back is the
  // one the request goes to, so the decision is made on it (never on the raw text).
  t.match(parseAbsoluteUrl('http://ALLOWED.test%2e/'), { ok: true, host: 'allowed.test.' });
  t.match(parseAbsoluteUrl('http://0x7f.1/'), { ok: true, host: '127.0.0.1' }, 'a hex IPv4 spelling becomes the literal decide() refuses');
});

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
/** A ClientHello body (after the handshake header) with these extensions, each [type, data]. */
function hello(exts: Array<[number, Buffer]> | undefined): Buffer {
  const base = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([0]),
    u16(2),
    Buffer.from([0x13, 0x01]),
    Buffer.from([1, 0]),
  ]);
  if (!exts) return base;
  const ext = Buffer.concat(exts.map(([type, data]) => Buffer.concat([u16(type), u16(data.length), data])));
  return Buffer.concat([base, u16(ext.length), ext]);
}
const sniData = (...names: Array<[number, string]>) => {
  const list = Buffer.concat(names.map(([type, n]) => Buffer.concat([Buffer.from([type]), u16(n.length), Buffer.from(n, 'latin1')])));
  return Buffer.concat([u16(list.length), list]);
};

t.test('parseClientHello: the one server name, or invalid', async (t) => {
  const table: Array<[string, Buffer, { sni?: string } | RegExp]> = [
    ['the harness hello', clientHello('allowed.test').subarray(9), { sni: 'allowed.test' }],
    ['no extensions at all', hello(undefined), {}],
    ['extensions without server_name', hello([[0x2b, Buffer.from([2, 3, 4])]]), {}],
    ['one name', hello([[0, sniData([0, 'allowed.test'])]]), { sni: 'allowed.test' }],
    ['a name of another type is skipped', hello([[0, sniData([1, 'evil.test'], [0, 'allowed.test'])]]), { sni: 'allowed.test' }],
    ['bytes kept as they are (latin1)', hello([[0, sniData([0, 'allo\u00adwed.test'])]]), { sni: 'allo\u00adwed.test' }],
    ['two host names', hello([[0, sniData([0, 'allowed.test'], [0, 'evil.test'])]]), /two host names/],
    [
      'two server_name extensions',
      hello([
        [0, sniData([0, 'allowed.test'])],
        [0, sniData([0, 'evil.test'])],
      ]),
      /two server_name/,
    ],
    [
      'Encrypted Client Hello',
      hello([
        [0, sniData([0, 'allowed.test'])],
        [0xfe0d, Buffer.alloc(8)],
      ]),
      /Encrypted Client Hello/,
    ],
    ['ECH draft', hello([[0xfe0a, Buffer.alloc(8)]]), /Encrypted Client Hello/],
    ['ESNI', hello([[0xffce, Buffer.alloc(8)]]), /ESNI/],
    ['ech_outer_extensions', hello([[0xfd00, Buffer.alloc(2)]]), /ech_outer_extensions/],
    [
      'server_name list longer than its extension',
      hello([[0, Buffer.concat([u16(40), Buffer.from([0]), u16(3), Buffer.from('abc')])]]),
      /list length/,
    ],
    ['a name cut short', hello([[0, Buffer.concat([u16(6), Buffer.from([0]), u16(30), Buffer.from('abc')])]]), /truncated server name/],
    ['extensions length mismatch', Buffer.concat([hello([[0, sniData([0, 'allowed.test'])]]), Buffer.from([0])]), /length mismatch/],
    ['truncated in the cipher suites', hello(undefined).subarray(0, 37), /malformed/],
    ['empty', Buffer.alloc(0), /malformed/],
  ];
  for (const [what, body, want] of table) {
    const r = parseClientHello(body);
    if (want instanceof RegExp) t.match(r, { status: 'invalid', detail: want }, what);
    else t.same(r, { status: 'ok', ...want }, what);
  }
});
