// DNS messages through dns2's Packet codec: build queries and answers, read an answer's A chain. No I/O.
import { Packet, type Question, type Resource } from 'dns2';
import { isIPv4 } from 'node:net';
import { randomInt } from 'node:crypto';

export { Packet };
export const TYPE = { A: 1, CNAME: 5, AAAA: 28, SVCB: 64, HTTPS: 65 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const CLASS_IN = 1;
const MAX_CNAME_CHAIN = 10;

const TYPE_NAMES = new Map<number, string>(Object.entries(Packet.TYPE).map(([k, v]) => [v as number, k]));
TYPE_NAMES.set(TYPE.SVCB, 'SVCB').set(TYPE.HTTPS, 'HTTPS');
const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));

export const typeName = (t: number): string => TYPE_NAMES.get(t) ?? `TYPE${t}`;
export const rcodeName = (r: number): string => RCODE_NAMES.get(r) ?? `RCODE${r}`;

/** A recursive query for `name`, type A, class IN, with a random transaction id. */
export function buildQuery(name: string): { id: number; bytes: Buffer } {
  const id = randomInt(0x10000);
  const p = new Packet();
  p.header.id = id;
  p.header.rd = 1;
  p.questions.push({ name, type: TYPE.A, class: CLASS_IN } as Question);
  return { id, bytes: p.toBuffer() };
}

/** Parse, returning undefined for anything dns2 cannot read. */
export function parse(bytes: Buffer): Packet | undefined {
  try {
    return Packet.parse(bytes);
  } catch {
    return undefined;
  }
}

export interface AChain {
  ips: string[];
  /** The smallest TTL along the CNAME chain and the A records. */
  ttl: number;
}

/** Follow `name`'s CNAME chain inside an answer and collect the A records at its end. */
export function readAChain(answer: Packet, name: string): AChain {
  let target = name.toLowerCase();
  let ttl = Number.MAX_SAFE_INTEGER;
  const seen = new Set<string>();
  for (let hop = 0; hop <= MAX_CNAME_CHAIN && !seen.has(target); hop++) {
    seen.add(target);
    const at = answer.answers.filter((r) => r && typeof r.name === 'string' && r.name.toLowerCase() === target && r.class === CLASS_IN);
    const a = at.filter((r) => r.type === TYPE.A);
    if (a.length) {
      const ips = [...new Set(a.map((r) => String(r.address)))];
      return { ips, ttl: Math.min(ttl, ...a.map((r) => r.ttl)) };
    }
    const cname = at.find((r) => r.type === TYPE.CNAME && typeof r.domain === 'string');
    if (!cname) break;
    ttl = Math.min(ttl, cname.ttl);
    target = cname.domain!.toLowerCase();
  }
  return { ips: [], ttl: 0 };
}

/** True when every address in the list is a well-formed IPv4 address. */
export const allIPv4 = (ips: readonly string[]): boolean => ips.every((ip) => isIPv4(ip));

/** The response to `request` with the given rcode and A answers (named as the client asked). */
export function buildResponse(request: Packet, rcode: number, ips: readonly string[] = [], ttl = 0): Packet {
  const res = Packet.createResponseFromRequest(request);
  res.header.ra = 1;
  res.header.rcode = rcode;
  const q = request.questions[0];
  if (q) {
    for (const address of ips) {
      res.answers.push({ name: q.name, type: TYPE.A, class: CLASS_IN, ttl, address } as Resource);
    }
  }
  return res;
}
