// The address guard as a table: an address, its class, and whether the gateway may connect to it.
// Every range's edges and the addresses just outside them; other spellings of an address. No I/O.
import t from 'tap';
import { classifyAddress, isReachable, SPECIAL_V4, type AddressKind } from '../proxy/address.js';

const TABLE: ReadonlyArray<[ip: string, kind: AddressKind]> = [
  // Public, including the addresses on either side of every special range.
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['1.0.0.0', 'public'],
  ['9.255.255.255', 'public'],
  ['11.0.0.0', 'public'],
  ['100.63.255.255', 'public'],
  ['100.128.0.0', 'public'],
  ['126.255.255.255', 'public'],
  ['128.0.0.0', 'public'],
  ['169.253.255.255', 'public'],
  ['169.255.0.0', 'public'],
  ['172.15.255.255', 'public'],
  ['172.32.0.0', 'public'],
  ['191.255.255.255', 'public'],
  ['192.0.1.255', 'public'],
  ['192.0.3.0', 'public'],
  ['192.88.98.255', 'public'],
  ['192.88.100.0', 'public'],
  ['192.167.255.255', 'public'],
  ['192.169.0.0', 'public'],
  ['198.17.255.255', 'public'],
  ['198.20.0.0', 'public'],
  ['198.51.99.255', 'public'],
  ['198.51.101.0', 'public'],
  ['203.0.112.255', 'public'],
  ['203.0.114.0', 'public'],
  ['223.255.255.255', 'public'],
  // This network, private, CGNAT, loopback, link-local (cloud metadata), IETF, benchmark.
  ['0.0.0.0', 'this-network'],
  ['0.255.255.255', 'this-network'],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['100.64.0.0', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['169.254.169.254', 'link-local'],
  ['169.254.0.0', 'link-local'],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['192.0.0.0', 'ietf-reserved'],
  ['192.0.0.255', 'ietf-reserved'],
  ['192.88.99.1', 'reserved'],
  ['192.168.0.1', 'private'],
  ['192.168.255.255', 'private'],
  ['198.18.0.0', 'benchmark'],
  ['198.19.255.255', 'benchmark'],
  // Documentation ranges: routed nowhere, treated as public (the hermetic test world lives there).
  ['192.0.2.0', 'documentation'],
  ['192.0.2.255', 'documentation'],
  ['198.51.100.53', 'documentation'],
  ['203.0.113.10', 'documentation'],
  // Multicast, reserved, broadcast.
  ['224.0.0.0', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'],
  ['255.255.255.255', 'reserved'],
  // IPv6 of any kind is never reached: the gateway speaks IPv4 only (v4-mapped loopback included).
  ['::1', 'ipv6'],
  ['::', 'ipv6'],
  ['2001:4860:4860::8888', 'ipv6'],
  ['::ffff:127.0.0.1', 'ipv6'],
  ['::ffff:8.8.8.8', 'ipv6'],
  ['64:ff9b::a00:1', 'ipv6'],
  ['fe80::1%eth0', 'ipv6'],
  // Not an address in dotted-decimal form: other spellings a URL parser would accept are refused.
  ['', 'invalid'],
  ['127.1', 'invalid'],
  ['2130706433', 'invalid'],
  ['0x7f000001', 'invalid'],
  ['0x7f.0.0.1', 'invalid'],
  ['0177.0.0.1', 'invalid'],
  ['010.0.0.1', 'invalid'],
  ['256.0.0.1', 'invalid'],
  ['1.2.3', 'invalid'],
  ['1.2.3.4.5', 'invalid'],
  [' 8.8.8.8', 'invalid'],
  ['8.8.8.8 ', 'invalid'],
  ['8.8.8.8.', 'invalid'],
  ['[::1]', 'invalid'],
  ['localhost', 'invalid'],
];

t.test('classifyAddress: the table', async (t) => {
  for (const [ip, kind] of TABLE) {
    t.equal(classifyAddress(ip), kind, JSON.stringify(ip));
    t.equal(isReachable(ip), kind === 'public' || kind === 'documentation', `${JSON.stringify(ip)} reachable`);
  }
});

t.test('every special range: its first and last address have its kind', async (t) => {
  for (const { cidr, kind } of SPECIAL_V4) {
    const [base, bits] = cidr.split('/');
    const first = base!.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const last = first + 2 ** (32 - Number(bits)) - 1;
    const text = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
    t.equal(classifyAddress(text(first)), kind, `${cidr} first`);
    t.equal(classifyAddress(text(last)), kind, `${cidr} last`);
  }
});
