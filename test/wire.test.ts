// The DNS server's fast codec paths give exactly what dns2 gives (random queries, byte for byte).
import t from 'tap';
import { Packet } from 'dns2';
import { buildResponse, encodeQueryFast, encodeResponseFast, parse, parseAnswerFast, parseQueryFast } from '../proxy/dns/wire.js';

let seed = Number(process.env.WIRE_TEST_SEED ?? 12345);
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return (seed >>> 8) % n; // the low bits of this generator repeat with a short period

};
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.*\u00e9\u00ff\u0000 ';

function label(): Buffer {
  const len = rnd(10) === 0 ? 60 + rnd(4) : 1 + rnd(12);
  return Buffer.from(Array.from({ length: len }, () => ALPHABET.charCodeAt(rnd(ALPHABET.length)) & 0xff));
}

/** A random query; now and then a pointer, an empty name, an oversized or truncated one, an OPT record. */
function query(): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(rnd(0x10000), 0);
  head.writeUInt16BE(rnd(0x10000) & (rnd(2) ? 0x7fff : 0xffff), 2);
  head.writeUInt16BE(1, 4);
  const withOpt = rnd(2) === 1;
  head.writeUInt16BE(withOpt ? 1 : 0, 10);
  const parts: Buffer[] = [head];
  const n = rnd(8) === 0 ? 0 : 1 + rnd(rnd(10) === 0 ? 6 : 4);
  for (let i = 0; i < n; i++) {
    const l = label();
    parts.push(Buffer.from([l.length]), l);
  }
  const tail = rnd(12);
  if (tail === 0) parts.push(Buffer.from([0xc0, 0x0c]));
  else if (tail === 1) parts.push(Buffer.from([0x41]));
  else parts.push(Buffer.from([0]));
  const qt = Buffer.alloc(4);
  qt.writeUInt16BE([1, 28, 65, 255, 16, rnd(0x10000)][rnd(6)]!, 0);
  qt.writeUInt16BE(rnd(5) === 0 ? rnd(0x10000) : 1, 2);
  parts.push(tail === 2 ? qt.subarray(0, rnd(4)) : qt);
  if (withOpt) parts.push(Buffer.from([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

const HEADER_FIELDS = ['id', 'qr', 'opcode', 'aa', 'tc', 'rd', 'ra', 'z', 'ad', 'cd', 'rcode', 'qdcount', 'ancount', 'nscount', 'arcount'];

/** What a parse gives, as plain data: compared between the fast paths and dns2. */
const view = (p: Packet) => ({
  header: Object.fromEntries(HEADER_FIELDS.map((f) => [f, (p.header as unknown as Record<string, number>)[f]])),
  questions: p.questions.map((q) => ({ name: q.name, type: q.type, class: q.class })),
  answers: p.answers.map((r) => ({ name: r.name, type: r.type, class: r.class, ttl: r.ttl, address: r.address, domain: r.domain })),
});

t.test('parseQueryFast reads what dns2 reads, or declines', async (t) => {
  let fast = 0;
  let mismatches = 0;
  for (let i = 0; i < 5000; i++) {
    const msg = query();
    const a = parseQueryFast(msg);
    if (!a) continue;
    fast++;
    const b = parse(msg);
    const same = !!b && JSON.stringify(view(a)) === JSON.stringify(view(b));
    if (!same && mismatches++ < 3) t.fail(`differs on ${msg.toString('hex')}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.ok(fast > 2000, `fast path taken for most queries (${fast})`);
});

t.test('encodeResponseFast writes what dns2 writes', async (t) => {
  let mismatches = 0;
  const attempt = (f: () => Buffer) => {
    try {
      return f().toString('hex');
    } catch (err) {
      return `throws ${(err as Error).message}`;
    }
  };
  for (let i = 0; i < 5000; i++) {
    const req = parse(query());
    if (!req || req.questions.length !== 1) continue;
    const ips = Array.from({ length: rnd(4) }, () => `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`);
    const ttl = [0, 1, 60, 3600, 0x7fffffff, 0x80000000, 0xffffffff][rnd(7)]!;
    const rcode = rnd(6);
    const fast = attempt(() => encodeResponseFast(buildResponse(req, rcode, ips, ttl)));
    const slow = attempt(() => buildResponse(req, rcode, ips, ttl).toBuffer());
    if (fast !== slow && mismatches++ < 3) t.fail(`differs for ${JSON.stringify(req.questions[0])}: ${fast} vs ${slow}`);
  }
  t.equal(mismatches, 0, 'no differences');
});

t.test('a typical answer takes the fast path', async (t) => {
  const req = new Packet();
  req.header.id = 7;
  req.header.rd = 1;
  req.questions.push({ name: 'api.openai.com', type: 1, class: 1 } as never);
  const res = buildResponse(req, 0, ['203.0.113.7', '198.51.100.1'], 300);
  t.ok(encodeResponseFast(res).equals(res.toBuffer()));
  t.same(parseQueryFast(req.toBuffer())?.questions[0], { name: 'api.openai.com', type: 1, class: 1 });
});

/** A random upstream-style answer built with dns2 (names compressed by its encoder), sometimes damaged. */
function answer(): Buffer {
  const p = new Packet();
  p.header.id = rnd(0x10000);
  p.header.qr = 1;
  p.header.rd = 1;
  p.header.ra = rnd(2) as 0 | 1;
  p.header.rcode = [0, 0, 0, 3, 2, rnd(16)][rnd(6)]!;
  const names = ['api.openai.com', 'Edge.Example.NET', 'a.b.c.d.e.f.example.org', 'x.api.openai.com', `${label().toString('latin1')}.example`];
  const pick = () => names[rnd(names.length)]!;
  const qname = pick();
  if (rnd(10)) p.questions.push({ name: qname, type: 1, class: 1 } as never);
  let owner = qname;
  for (let i = rnd(5); i > 0; i--) {
    if (rnd(3) === 0) {
      const next = pick();
      p.answers.push({ name: owner, type: 5, class: 1, ttl: rnd(100000), domain: next } as never);
      owner = next;
    } else {
      p.answers.push({ name: rnd(4) ? owner : pick(), type: 1, class: rnd(8) ? 1 : 3, ttl: [60, 0, 0x80000001, rnd(1 << 30)][rnd(4)]!, address: `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}` } as never);
    }
  }
  if (rnd(8) === 0) p.authorities.push({ name: 'example.org', type: 2, class: 1, ttl: 60, ns: 'ns.example.org' } as never);
  if (rnd(8) === 0) p.answers.push({ name: owner, type: 28, class: 1, ttl: 60, address: '2001:db8::1' } as never);
  let b: Buffer;
  try {
    b = p.toBuffer();
  } catch {
    return Buffer.alloc(0);
  }
  const damage = rnd(6);
  if (damage === 0) b = b.subarray(0, rnd(b.length + 1));
  else if (damage === 1 && b.length > 12) b[12 + rnd(b.length - 12)] = rnd(256);
  else if (damage === 2 && b.length > 13) b.writeUInt16BE(0xc000 | rnd(b.length + 8), 12 + rnd(b.length - 13));
  return b;
}


t.test('parseAnswerFast reads what dns2 reads, or declines', async (t) => {
  let fast = 0;
  let mismatches = 0;
  for (let i = 0; i < 5000; i++) {
    const msg = answer();
    const a = parseAnswerFast(msg);
    if (!a) continue;
    fast++;
    const b = parse(msg);
    const same = !!b && JSON.stringify(view(a)) === JSON.stringify(view(b));
    if (!same && mismatches++ < 3) t.fail(`differs on ${msg.toString('hex')}: ${JSON.stringify(view(a))} vs ${b && JSON.stringify(view(b))}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.ok(fast > 1500, `fast path taken for most answers (${fast})`);
});

t.test('encodeQueryFast writes what dns2 writes', async (t) => {
  const names = ['api.openai.com', 'a', `${'a'.repeat(63)}.example`, `${'a'.repeat(64)}.example`, 'a..b', '.a', 'a.', '', 'Ex\u00e9.com', 'ex\u0100.com', `${'abcdefghi.'.repeat(26)}com`];
  for (let i = 0; i < 300; i++) names.push(`${label().toString('latin1')}.${label().toString('latin1')}`);
  let mismatches = 0;
  for (const name of names) {
    const id = rnd(0x10000);
    const fast = encodeQueryFast(id, name);
    if (!fast) continue;
    const p = new Packet();
    p.header.id = id;
    p.header.rd = 1;
    p.questions.push({ name, type: 1, class: 1 } as never);
    if (!fast.equals(p.toBuffer()) && mismatches++ < 3) t.fail(`differs for ${JSON.stringify(name)}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.ok(encodeQueryFast(1, 'api.openai.com'), 'a normal name takes the fast path');
});
