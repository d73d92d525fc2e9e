// DNS messages (RFC 1035), the project's one codec: parse a query or an upstream answer, build and
// encode our answers and our upstream queries, read an answer's A chain. No I/O, no dependency.
// Every record is parsed whatever its type: A and CNAME are decoded, every other type is carried as
// its raw rdata (RFC 3597). Everything is bounded: names (255 octets), compression pointers (strictly
// backwards, never into the header), record counts, each record's rdata inside the message. Anything
// else is malformed, and a malformed message parses to undefined (never a throw, never a guess).
import { isIPv4 } from 'node:net';
import { randomInt } from 'node:crypto';

export const TYPE = { A: 1, CNAME: 5, AAAA: 28, OPT: 41, SVCB: 64, HTTPS: 65 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const CLASS_IN = 1;
const MAX_CNAME_CHAIN = 10;
/** A name on the wire: its labels, their length octets and the root's zero, at most (RFC 1035 §2.3.4). */
const MAX_NAME_OCTETS = 255;
const MAX_LABEL = 63;
/** parseMessage() refuses a message claiming more records than this (the parse cost stays bounded). */
export const MAX_RECORDS = 512;

/** The names the audit log gives query types (qtype); a type not listed is `TYPE<n>` (RFC 3597). */
const TYPE_NAMES = new Map<number, string>(
  Object.entries({
    A: 1,
    NS: 2,
    MD: 3,
    MF: 4,
    CNAME: 5,
    SOA: 6,
    MB: 7,
    MG: 8,
    MR: 9,
    NULL: 10,
    WKS: 11,
    PTR: 12,
    HINFO: 13,
    MINFO: 14,
    MX: 15,
    TXT: 16,
    AAAA: 28,
    SRV: 33,
    EDNS: 41,
    DNSKEY: 48,
    SVCB: 64,
    HTTPS: 65,
    SPF: 99,
    AXFR: 252,
    MAILB: 253,
    MAILA: 254,
    ANY: 255,
    CAA: 257,
  }).map(([k, v]) => [v, k]),
);
const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));

export const typeName = (t: number): string => TYPE_NAMES.get(t) ?? `TYPE${t}`;
export const rcodeName = (r: number): string => RCODE_NAMES.get(r) ?? `RCODE${r}`;

export interface Header {
  id: number;
  qr: number;
  opcode: number;
  aa: number;
  tc: number;
  rd: number;
  ra: number;
  /** Reserved: read, always written as 0. */
  z: number;
  ad: number;
  cd: number;
  rcode: number;
}

export interface Question {
  name: string;
  type: number;
  class: number;
}

export interface ResourceRecord {
  name: string;
  type: number;
  class: number;
  /** Seconds; a TTL with the top bit set reads as 0x7fffffff (as dns2 did). */
  ttl: number;
  /** The record's data as it was on the wire (a parsed record), or what is written for an unknown type. */
  rdata?: Buffer;
  /** Type A: the dotted address. */
  address?: string;
  /** Type CNAME: the target, decompressed. */
  domain?: string;
}

export interface Message {
  header: Header;
  questions: Question[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

export class Malformed extends Error {
  override readonly name = 'Malformed';
  readonly code = 'ERR_DNS_MALFORMED';
}

// ---- parsing ----------------------------------------------------------------------------------------

function readHeader(msg: Buffer): Header {
  const flags = msg.readUInt16BE(2);
  return {
    id: msg.readUInt16BE(0),
    qr: flags >> 15,
    opcode: (flags >> 11) & 0xf,
    aa: (flags >> 10) & 1,
    tc: (flags >> 9) & 1,
    rd: (flags >> 8) & 1,
    ra: (flags >> 7) & 1,
    z: (flags >> 6) & 1,
    ad: (flags >> 5) & 1,
    cd: (flags >> 4) & 1,
    rcode: flags & 0xf,
  };
}

/**
 * Read a name at `start`; `end` is where the bytes after it begin. A compression pointer must point
 * strictly before the label sequence it ends and past the header, so pointers cannot loop and every
 * name ends. A label holding a dot would read as two labels (another name): malformed.
 */
function readName(msg: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  let off = start;
  let floor = start; // a pointer must point below this
  let end = -1;
  let octets = 1;
  for (;;) {
    if (off >= msg.length) throw new Malformed('name truncated');
    const len = msg[off]!;
    if (len === 0) {
      if (end < 0) end = off + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= msg.length) throw new Malformed('pointer truncated');
      const to = ((len & 0x3f) << 8) | msg[off + 1]!;
      if (to >= floor || to < 12) throw new Malformed('compression pointer not strictly backwards');
      if (end < 0) end = off + 2;
      off = floor = to;
      continue;
    }
    if (len & 0xc0) throw new Malformed('reserved label type');
    octets += len + 1;
    if (octets > MAX_NAME_OCTETS) throw new Malformed('name longer than 255 octets');
    if (off + 1 + len > msg.length) throw new Malformed('label truncated');
    const label = msg.subarray(off + 1, off + 1 + len);
    if (label.includes(0x2e)) throw new Malformed('dot inside a label');
    labels.push(label.toString('latin1'));
    off += 1 + len;
  }
  return { name: labels.join('.'), end };
}

function readQuestions(msg: Buffer, count: number, at: number): { questions: Question[]; end: number } {
  const questions: Question[] = [];
  let off = at;
  for (let i = 0; i < count; i++) {
    const n = readName(msg, off);
    if (n.end + 4 > msg.length) throw new Malformed('question truncated');
    questions.push({ name: n.name, type: msg.readUInt16BE(n.end), class: msg.readUInt16BE(n.end + 2) });
    off = n.end + 4;
  }
  return { questions, end: off };
}

function readRecord(msg: Buffer, at: number): { record: ResourceRecord; end: number } {
  const n = readName(msg, at);
  if (n.end + 10 > msg.length) throw new Malformed('record truncated');
  const type = msg.readUInt16BE(n.end);
  const length = msg.readUInt16BE(n.end + 8);
  const start = n.end + 10;
  const end = start + length;
  if (end > msg.length) throw new Malformed('rdata truncated');
  const record: ResourceRecord = {
    name: n.name,
    type,
    class: msg.readUInt16BE(n.end + 2),
    ttl: Math.min(msg.readUInt32BE(n.end + 4), 0x7fffffff),
    rdata: msg.subarray(start, end),
  };
  if (type === TYPE.A) {
    if (length !== 4) throw new Malformed('A record not 4 bytes');
    record.address = `${msg[start]}.${msg[start + 1]}.${msg[start + 2]}.${msg[start + 3]}`;
  } else if (type === TYPE.CNAME) {
    const d = readName(msg, start); // may point anywhere before it, but must fill the rdata exactly
    if (d.end !== end) throw new Malformed('CNAME target does not fill its rdata');
    record.domain = d.name;
  }
  return { record, end };
}

/** A query's header and question section; the records after it (an EDNS OPT at most) are not read. */
export function parseQuery(msg: Buffer): Message | undefined {
  if (msg.length < 12) return undefined;
  try {
    const { questions } = readQuestions(msg, msg.readUInt16BE(4), 12);
    return { header: readHeader(msg), questions, answers: [], authorities: [], additionals: [] };
  } catch (err) {
    if (err instanceof Malformed) return undefined;
    throw err;
  }
}

/** A whole message (an upstream's answer): every section, every record type; undefined when malformed. */
export function parseMessage(msg: Buffer, maxRecords = MAX_RECORDS): Message | undefined {
  if (msg.length < 12) return undefined;
  const counts = [4, 6, 8, 10].map((o) => msg.readUInt16BE(o)) as [number, number, number, number];
  if (counts.reduce((a, b) => a + b) > maxRecords) return undefined;
  try {
    const { questions, end } = readQuestions(msg, counts[0], 12);
    let off = end;
    const section = (count: number) => {
      const records: ResourceRecord[] = [];
      for (let i = 0; i < count; i++) {
        const r = readRecord(msg, off);
        records.push(r.record);
        off = r.end;
      }
      return records;
    };
    const answers = section(counts[1]);
    const authorities = section(counts[2]);
    const additionals = section(counts[3]);
    return { header: readHeader(msg), questions, answers, authorities, additionals };
  } catch (err) {
    if (err instanceof Malformed) return undefined;
    throw err;
  }
}

// ---- building and encoding ---------------------------------------------------------------------------

/**
 * A name as uncompressed wire labels (one trailing dot, the root's, allowed); throws Malformed unless
 * it is a plain latin1 name that fits.
 */
function wireName(fqdn: string): Buffer {
  const name = fqdn.length > 1 && fqdn.endsWith('.') ? fqdn.slice(0, -1) : fqdn;
  if (name === '' || name === '.') return Buffer.from([0]);
  const labels = name.split('.');
  if (labels.some((l) => l.length === 0 || l.length > MAX_LABEL) || /[^\u0000-\u00ff]/.test(name)) {
    throw new Malformed(`cannot encode the name ${JSON.stringify(name)}`);
  }
  const out = Buffer.alloc(labels.reduce((n, l) => n + l.length + 1, 1));
  if (out.length > MAX_NAME_OCTETS) throw new Malformed('name longer than 255 octets');
  let off = 0;
  for (const l of labels) {
    out[off++] = l.length;
    off += out.write(l, off, 'latin1');
  }
  out[off] = 0;
  return out;
}

/** Types whose rdata holds names that may be compressed (RFC 1035): their raw rdata is not portable. */
const COMPRESSIBLE = new Set([2, 3, 4, 6, 7, 8, 9, 12, 14, 15]);

/** A record's rdata, or undefined for type A (written in place: 4 bytes). */
function rdataOf(r: ResourceRecord): Buffer | undefined {
  if (r.type === TYPE.A) {
    if (typeof r.address !== 'string' || !isIPv4(r.address)) throw new Malformed(`A record with address ${JSON.stringify(r.address)}`);
    return undefined;
  }
  if (r.type === TYPE.CNAME) return wireName(String(r.domain));
  if (COMPRESSIBLE.has(r.type)) throw new Malformed(`cannot encode a ${typeName(r.type)} record`);
  if (!r.rdata || r.rdata.length > 0xffff) throw new Malformed(`${typeName(r.type)} record without valid rdata`);
  return r.rdata;
}

/**
 * The message on the wire, in one allocation. A record named as the first question points at it
 * (offset 12), unless that is the root (one byte, shorter than a pointer); every other name is written
 * whole. Throws Malformed for what cannot be encoded (the caller's bug).
 */
export function encode(m: Message): Buffer {
  const h = m.header;
  const sections = [m.questions, m.answers, m.authorities, m.additionals];
  if (sections.some((s) => s.length > 0xffff)) throw new Malformed('too many records');
  const qnames = m.questions.map((q) => wireName(q.name));
  const first = m.questions[0]?.name || undefined;
  const records = m.answers.length + m.authorities.length + m.additionals.length ? [...m.answers, ...m.authorities, ...m.additionals] : [];
  const parts = records.map((r) => ({
    r,
    owner: first !== undefined && r.name === first ? undefined : wireName(r.name),
    rdata: rdataOf(r),
  }));
  let size = 12;
  for (const n of qnames) size += n.length + 4;
  for (const p of parts) size += (p.owner?.length ?? 2) + 10 + (p.rdata?.length ?? 4);
  const out = Buffer.allocUnsafe(size);
  const bit = (v: number, shift: number, width = 1) => (v & ((1 << width) - 1)) << shift;
  out.writeUInt16BE(h.id & 0xffff, 0);
  out.writeUInt16BE(
    bit(h.qr, 15) |
      bit(h.opcode, 11, 4) |
      bit(h.aa, 10) |
      bit(h.tc, 9) |
      bit(h.rd, 8) |
      bit(h.ra, 7) |
      bit(h.ad, 5) |
      bit(h.cd, 4) |
      bit(h.rcode, 0, 4),
    2,
  );
  sections.forEach((s, i) => out.writeUInt16BE(s.length, 4 + 2 * i));
  let off = 12;
  m.questions.forEach((q, i) => {
    off += qnames[i]!.copy(out, off);
    out.writeUInt16BE(q.type & 0xffff, off);
    out.writeUInt16BE(q.class & 0xffff, off + 2);
    off += 4;
  });
  for (const { r, owner, rdata } of parts) {
    if (owner) off += owner.copy(out, off);
    else off = out.writeUInt16BE(0xc00c, off); // the first question's name, at offset 12
    out.writeUInt16BE(r.type & 0xffff, off);
    out.writeUInt16BE(r.class & 0xffff, off + 2);
    out.writeUInt32BE(Math.min(r.ttl >>> 0, 0x7fffffff), off + 4);
    out.writeUInt16BE(rdata?.length ?? 4, off + 8);
    off += 10;
    if (rdata) off += rdata.copy(out, off);
    else {
      const a = String(r.address).split('.');
      for (let i = 0; i < 4; i++) out[off + i] = Number(a[i]);
      off += 4;
    }
  }
  return out;
}

const header = (fields: Partial<Header>): Header => ({
  id: 0,
  qr: 0,
  opcode: 0,
  aa: 0,
  tc: 0,
  rd: 0,
  ra: 0,
  z: 0,
  ad: 0,
  cd: 0,
  rcode: 0,
  ...fields,
});

/** A recursive query for `name`, type A, class IN, with a random transaction id. Throws Malformed for a name that cannot be sent. */
export function buildQuery(name: string): { id: number; bytes: Buffer } {
  const id = randomInt(0x10000);
  const q: Message = {
    header: header({ id, rd: 1 }),
    questions: [{ name, type: TYPE.A, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  return { id, bytes: encode(q) };
}

/** The response to `request` with the given rcode and A answers (named as the client asked). */
export function buildResponse(request: Message, rcode: number, ips: readonly string[] = [], ttl = 0): Message {
  const { id, opcode, rd } = request.header;
  const q = request.questions[0];
  return {
    header: header({ id, opcode, rd, qr: 1, ra: 1, rcode }),
    questions: request.questions.slice(),
    answers: q ? ips.map((address) => ({ name: q.name, type: TYPE.A, class: CLASS_IN, ttl, address })) : [],
    authorities: [],
    additionals: [],
  };
}

// ---- reading an answer --------------------------------------------------------------------------------

export interface AChain {
  ips: string[];
  /** The smallest TTL along the CNAME chain and the A records. */
  ttl: number;
}

/** Follow `name`'s CNAME chain inside an answer and collect the A records at its end. */
export function readAChain(answer: Message, name: string): AChain {
  let target = name.toLowerCase();
  let ttl = Number.MAX_SAFE_INTEGER;
  const seen = new Set<string>();
  for (let hop = 0; hop <= MAX_CNAME_CHAIN && !seen.has(target); hop++) {
    seen.add(target);
    const at = answer.answers.filter((r) => r.name.toLowerCase() === target && r.class === CLASS_IN);
    const a = at.filter((r) => r.type === TYPE.A);
    if (a.length) {
      const ips = [...new Set(a.flatMap((r) => (r.address === undefined ? [] : [r.address])))];
      return { ips, ttl: Math.min(ttl, ...a.map((r) => r.ttl)) };
    }
    const cname = at.find((r) => r.type === TYPE.CNAME);
    if (cname?.domain === undefined) break;
    ttl = Math.min(ttl, cname.ttl);
    target = cname.domain.toLowerCase();
  }
  return { ips: [], ttl: 0 };
}

/** True when every address in the list is a well-formed IPv4 address. */
export const allIPv4 = (ips: readonly string[]): boolean => ips.every((ip) => isIPv4(ip));
