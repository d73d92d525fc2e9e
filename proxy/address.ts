// Address guard: classify an IP as public or as the special range it belongs to. No I/O.
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export type AddressKind =
  | 'public'
  | 'documentation'
  | 'this-network'
  | 'private'
  | 'cgnat'
  | 'loopback'
  | 'link-local'
  | 'ietf-reserved'
  | 'benchmark'
  | 'multicast'
  | 'reserved'
  | 'unique-local'
  | 'teredo'
  | 'invalid';

/**
 * IPv4 special-purpose ranges. Every kind here except `documentation` is never reachable through the
 * gateway. The firewall rejects the same list in the kernel. Documentation ranges (TEST-NET-1/2/3) are
 * routed nowhere on the real internet, so treating them as public opens no LAN and lets the hermetic
 * test world live on them.
 */
export const SPECIAL_V4: ReadonlyArray<{ cidr: string; kind: Exclude<AddressKind, 'public' | 'invalid'> }> = [
  { cidr: '0.0.0.0/8', kind: 'this-network' },
  { cidr: '10.0.0.0/8', kind: 'private' },
  { cidr: '100.64.0.0/10', kind: 'cgnat' },
  { cidr: '127.0.0.0/8', kind: 'loopback' },
  { cidr: '169.254.0.0/16', kind: 'link-local' },
  { cidr: '172.16.0.0/12', kind: 'private' },
  { cidr: '192.0.0.0/24', kind: 'ietf-reserved' },
  { cidr: '192.0.2.0/24', kind: 'documentation' },
  { cidr: '192.88.99.0/24', kind: 'reserved' },
  { cidr: '192.168.0.0/16', kind: 'private' },
  { cidr: '198.18.0.0/15', kind: 'benchmark' },
  { cidr: '198.51.100.0/24', kind: 'documentation' },
  { cidr: '203.0.113.0/24', kind: 'documentation' },
  { cidr: '224.0.0.0/4', kind: 'multicast' },
  { cidr: '240.0.0.0/4', kind: 'reserved' },
];

/** The IPv4 ranges that are never reachable (the firewall's reject list). */
export const FORBIDDEN_V4: readonly string[] = SPECIAL_V4.filter((r) => r.kind !== 'documentation').map((r) => r.cidr);

function listOf(ranges: ReadonlyArray<{ cidr: string; kind: AddressKind }>, family: 'ipv4' | 'ipv6') {
  return ranges.map(({ cidr, kind }) => {
    const [net, bits] = cidr.split('/');
    const list = new BlockList();
    list.addSubnet(net!, Number(bits), family);
    return { list, kind };
  });
}

const V4 = listOf(SPECIAL_V4, 'ipv4');
const V6_SIMPLE = listOf(
  [
    { cidr: '::/128', kind: 'this-network' },
    { cidr: '::1/128', kind: 'loopback' },
    { cidr: '2001::/32', kind: 'teredo' },
    { cidr: '2001:db8::/32', kind: 'documentation' },
    { cidr: 'fc00::/7', kind: 'unique-local' },
    { cidr: 'fe80::/10', kind: 'link-local' },
    { cidr: 'ff00::/8', kind: 'multicast' },
    { cidr: '100::/64', kind: 'reserved' },
  ],
  'ipv6',
);

function classifyV4(ip: string): AddressKind {
  for (const { list, kind } of V4) if (list.check(ip, 'ipv4')) return kind;
  return 'public';
}

/** Expand an IPv6 text address to its 16 bytes (the input was checked by isIPv6). */
function v6Bytes(ip: string): Buffer {
  let text = ip.split('%')[0]!;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const r = rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

const v4At = (b: Buffer, offset: number): string => [...b.subarray(offset, offset + 4)].join('.');

function classifyV6(ip: string): AddressKind {
  const b = v6Bytes(ip);
  const zeroes = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  // IPv4 embedded in IPv6: the IPv4 address decides (v4-mapped, v4-compatible, NAT64, 6to4).
  if (zeroes(0, 10) && b[10] === 0xff && b[11] === 0xff) return classifyV4(v4At(b, 12));
  if (b.readUInt32BE(0) === 0x0064ff9b && zeroes(4, 12)) return classifyV4(v4At(b, 12));
  if (b.readUInt16BE(0) === 0x2002) return classifyV4(v4At(b, 2));
  if (zeroes(0, 12) && !zeroes(12, 14)) return classifyV4(v4At(b, 12));
  for (const { list, kind } of V6_SIMPLE) if (list.check(ip, 'ipv6')) return kind;
  return 'public';
}

export function classifyAddress(ip: string): AddressKind {
  if (isIPv4(ip)) return classifyV4(ip);
  if (isIPv6(ip)) return classifyV6(ip);
  return 'invalid';
}

/** May the gateway connect to this address? Public (or documentation) IPv4 only: IPv6 is blocked. */
export function isReachable(ip: string): boolean {
  if (!isIPv4(ip)) return false;
  const kind = classifyV4(ip);
  return kind === 'public' || kind === 'documentation';
}
