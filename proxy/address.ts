// Address guard: classify an IP as public or as the special range it belongs to. No I/O.
import { isIPv4, isIPv6 } from 'node:net';

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
  | 'ipv6'
  | 'invalid';

/**
 * IPv4 special-purpose ranges. Every kind here except `documentation` is never reachable through the
 * gateway. The firewall rejects the same list in the kernel. Documentation ranges (TEST-NET-1/2/3) are
 * routed nowhere on the real internet, so treating them as public opens no LAN and lets the hermetic
 * test world live on them.
 */
export const SPECIAL_V4: ReadonlyArray<{ cidr: string; kind: Exclude<AddressKind, 'public' | 'ipv6' | 'invalid'> }> = [
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

/** The address as an unsigned 32-bit number (the input was checked by isIPv4). */
export function v4Number(ip: string): number {
  let n = 0;
  for (const part of ip.split('.')) n = n * 256 + Number(part);
  return n;
}

/** The dotted form of an unsigned 32-bit number. */
export const v4String = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** The network address (as a number) of the /`bits` network holding address `n`. */
export const v4Network = (n: number, bits: number): number => (bits === 0 ? 0 : (n & ((0xffffffff << (32 - bits)) >>> 0)) >>> 0);

/** The ranges as [first, last] numbers, in SPECIAL_V4's order. */
const V4_RANGES = SPECIAL_V4.map(({ cidr, kind }) => {
  const [base, bits] = cidr.split('/');
  const first = v4Network(v4Number(base!), Number(bits));
  return { first, last: first + 2 ** (32 - Number(bits)) - 1, kind };
});

/**
 * The kind of an address: `public`, one of SPECIAL_V4's kinds, `ipv6` for any IPv6 address (the gateway
 * reaches IPv4 only, so no IPv6 address is classified further), or `invalid`.
 */
export function classifyAddress(ip: string): AddressKind {
  if (!isIPv4(ip)) return isIPv6(ip) ? 'ipv6' : 'invalid';
  const n = v4Number(ip);
  for (const r of V4_RANGES) if (n >= r.first && n <= r.last) return r.kind;
  return 'public';
}

/** May the gateway connect to this address? Public (or documentation) IPv4 only: IPv6 is blocked. */
export function isReachable(ip: string): boolean {
  const kind = classifyAddress(ip);
  return kind === 'public' || kind === 'documentation';
}

/**
 * The guard, less the gateway's own addresses. Where the gateway's internet-side address is public, an
 * allowed name answered with it would pass "public?", and the connection would reach the gateway's own
 * services over loopback (which the firewall accepts), not the internet.
 */
export function notOwnAddress(guard: (ip: string) => boolean, own: () => ReadonlySet<string>): (ip: string) => boolean {
  return (ip) => guard(ip) && !own().has(ip);
}
