// DNS messages: build queries and answers, read an answer's A chain. No I/O. The common shapes (a plain
// query, our A answers, an upstream's A/CNAME answer) go through the project's own code below, 14–21×
// faster than dns2's bit-by-bit codec (README: Performance); dns2 reads and writes the rest.
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
  const fast = encodeQueryFast(id, name);
  if (fast) return { id, bytes: fast };
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

// ---- Fast paths for the server's hot loop ---------------------------------------------------------
// dns2's codec reads and writes bit by bit, which dominated the cost of a cached answer. The functions
// below handle the common shapes directly (queries, our A answers, A/CNAME upstream answers) and give
// the very same result as dns2 (checked byte for byte and field for field by test/wire.test.ts);
// anything else falls back to dns2.

const SIMPLE_NAME = /^[^.]+(?:\.[^.]+)*$/;
type Header = Packet['header'] & { ad: number; cd: number };
const MAX_WIRE_NAME = 255;

/**
 * Parse a query already screened by the server (one question, no answer or authority records), as
 * dns2's Packet.parse would: header and question. Additional records (an EDNS OPT at most) are not
 * read: answering never uses them. Returns undefined when the question is not a plain sequence of
 * labels (compression pointer, bad length, truncated): the caller then uses dns2's parse.
 */
export function parseQueryFast(msg: Buffer): Packet | undefined {
  if (msg.length < 12) return undefined;
  const labels: string[] = [];
  let off = 12;
  let octets = 1;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off]!;
    if (len === 0) break;
    if (len & 0xc0) return undefined;
    octets += len + 1;
    if (octets > MAX_WIRE_NAME || off + 1 + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  off++;
  if (off + 4 > msg.length) return undefined;
  const p = parseQueryHeader(msg);
  p.questions.push({ name: labels.join('.'), type: msg.readUInt16BE(off), class: msg.readUInt16BE(off + 2) } as Question);
  return p;
}

/**
 * Encode a response made by buildResponse() (one question, A answers for that name, nothing else)
 * exactly as dns2's toBuffer() would, name compression included; any other packet goes to dns2.
 */
export function encodeResponseFast(res: Packet): Buffer {
  const q = res.questions[0];
  const h = res.header as Header;
  const simple =
    res.questions.length === 1 &&
    q !== undefined &&
    typeof q.name === 'string' &&
    !res.authorities.length &&
    !res.additionals.length &&
    h.rcode >= 0 &&
    h.rcode <= 0xf &&
    res.answers.every((a) => a.name === q.name && a.type === TYPE.A && a.class === CLASS_IN && isIPv4(String(a.address)));
  const name = simple ? wireName(q.name) : undefined;
  if (!q || !name) return res.toBuffer();
  const out = Buffer.allocUnsafe(12 + name.length + 4 + res.answers.length * 16);
  out.writeUInt16BE(h.id & 0xffff, 0);
  const bit = (v: number, shift: number, width = 1) => (v & ((1 << width) - 1)) << shift;
  out.writeUInt16BE(bit(h.qr, 15) | bit(h.opcode, 11, 4) | bit(h.aa, 10) | bit(h.tc, 9) | bit(h.rd, 8) | bit(h.ra, 7) | bit(h.ad, 5) | bit(h.cd, 4) | h.rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(res.answers.length, 6);
  out.writeUInt32BE(0, 8);
  let off = 12 + name.copy(out, 12);
  out.writeUInt16BE(q.type & 0xffff, off);
  out.writeUInt16BE(q.class & 0xffff, off + 2);
  off += 4;
  for (const a of res.answers) {
    out.writeUInt16BE(0xc00c, off); // the question's name, at offset 12
    out.writeUInt16BE(TYPE.A, off + 2);
    out.writeUInt16BE(CLASS_IN, off + 4);
    out.writeUInt32BE(Math.min(a.ttl >>> 0, 0x7fffffff), off + 6);
    out.writeUInt16BE(4, off + 10);
    const parts = String(a.address).split('.');
    for (let i = 0; i < 4; i++) out[off + 12 + i] = Number(parts[i]);
    off += 16;
  }
  return out;
}

/** A name as uncompressed wire labels, or undefined unless it is a plain latin1 name that fits. */
function wireName(name: string): Buffer | undefined {
  if (!SIMPLE_NAME.test(name) || /[^\u0000-\u00ff]/.test(name)) return undefined;
  const labels = name.split('.');
  if (labels.some((l) => l.length > 63)) return undefined;
  const out = Buffer.alloc(labels.reduce((n, l) => n + l.length + 1, 1));
  if (out.length > MAX_WIRE_NAME) return undefined;
  let off = 0;
  for (const l of labels) {
    out[off++] = l.length;
    off += out.write(l, off, 'latin1');
  }
  out[off] = 0;
  return out;
}

/** buildQuery's message written directly (the same bytes dns2 writes); undefined for unusual names. */
export function encodeQueryFast(id: number, name: string): Buffer | undefined {
  const wire = wireName(name);
  if (!wire) return undefined;
  const out = Buffer.alloc(12 + wire.length + 4);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x0100, 2); // RD
  out.writeUInt16BE(1, 4);
  const off = 12 + wire.copy(out, 12);
  out.writeUInt16BE(TYPE.A, off);
  out.writeUInt16BE(CLASS_IN, off + 2);
  return out;
}

class Malformed extends Error {
  override readonly name = 'Malformed';
  readonly code = 'ERR_DNS_MALFORMED';
}

/** dns2's name decoding (pointers, cycle and length checks) on byte offsets; throws Malformed. */
function readName(msg: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  const visited = new Set<number>();
  let off = start;
  let end = -1;
  let octets = 1;
  const byte = (at: number) => {
    if (at >= msg.length) throw new Malformed('truncated');
    return msg[at]!;
  };
  let len = byte(off++);
  while (len) {
    if ((len & 0xc0) === 0xc0) {
      const pos = ((len - 0xc0) << 8) + byte(off++);
      if (visited.has(pos)) throw new Malformed('pointer cycle');
      visited.add(pos);
      if (end < 0) end = off;
      off = pos;
      len = byte(off++);
      continue;
    }
    if (len & 0xc0) throw new Malformed('bad label length');
    octets += len + 1;
    if (octets > MAX_WIRE_NAME) throw new Malformed('name too long');
    if (off + len > msg.length) throw new Malformed('truncated');
    labels.push(msg.toString('latin1', off, off + len));
    off += len;
    len = byte(off++);
  }
  return { name: labels.join('.'), end: end < 0 ? off : end };
}

/**
 * Parse an upstream answer as dns2's Packet.parse would, for the common shape: questions and answers
 * made of A and CNAME records, no authority or additional records. Returns undefined for anything
 * else (other record types, SOA in the authority section, EDNS, malformed): the caller uses dns2.
 */
export function parseAnswerFast(msg: Buffer): Packet | undefined {
  if (msg.length < 12) return undefined;
  const count = (o: number) => msg.readUInt16BE(o);
  if (count(8) !== 0 || count(10) !== 0) return undefined;
  try {
    const p = parseQueryHeader(msg);
    let off = 12;
    for (let i = count(4); i > 0; i--) {
      const n = readName(msg, off);
      if (n.end + 4 > msg.length) return undefined;
      p.questions.push({ name: n.name, type: msg.readUInt16BE(n.end), class: msg.readUInt16BE(n.end + 2) } as Question);
      off = n.end + 4;
    }
    for (let i = count(6); i > 0; i--) {
      const n = readName(msg, off);
      if (n.end + 10 > msg.length) return undefined;
      const type = msg.readUInt16BE(n.end);
      const r = { name: n.name, type, class: msg.readUInt16BE(n.end + 2), ttl: Math.min(msg.readUInt32BE(n.end + 4), 0x7fffffff) } as Resource;
      const length = msg.readUInt16BE(n.end + 8);
      const rdata = n.end + 10;
      if (type === TYPE.A) {
        if (rdata + length > msg.length) return undefined;
        r.address = [...msg.subarray(rdata, rdata + length)].join('.');
        off = rdata + length;
      } else if (type === TYPE.CNAME) {
        const d = readName(msg, rdata); // like dns2, the next record starts where the name ends
        r.domain = d.name;
        off = d.end;
      } else {
        return undefined;
      }
      p.answers.push(r);
    }
    return p;
  } catch (err) {
    if (err instanceof Malformed) return undefined;
    throw err;
  }
}

/**
 * A Packet holding only the header of `msg` (at least 12 bytes). dns2's Packet takes a plain header
 * object (its documented constructor); it becomes dns2's Header when the packet is encoded.
 */
function parseQueryHeader(msg: Buffer): Packet {
  const flags = msg.readUInt16BE(2);
  const p = new Packet();
  const header: Omit<Header, 'toBuffer'> = {
    id: msg.readUInt16BE(0),
    qr: (flags >> 15) as 0 | 1,
    opcode: (flags >> 11) & 0xf,
    aa: ((flags >> 10) & 1) as 0 | 1,
    tc: ((flags >> 9) & 1) as 0 | 1,
    rd: ((flags >> 8) & 1) as 0 | 1,
    ra: ((flags >> 7) & 1) as 0 | 1,
    z: (flags >> 6) & 1,
    ad: (flags >> 5) & 1,
    cd: (flags >> 4) & 1,
    rcode: flags & 0xf,
    qdcount: msg.readUInt16BE(4),
    ancount: msg.readUInt16BE(6),
    nscount: msg.readUInt16BE(8),
    arcount: msg.readUInt16BE(10),
  };
  p.header = header as Header;
  return p;
}
