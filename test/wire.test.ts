// The DNS server's fast codec paths give exactly what dns2 gives (random queries, byte for byte).
import t from 'tap';
import { Packet } from 'dns2';
import { buildResponse, encodeResponseFast, parse, parseQueryFast } from '../proxy/dns/wire.js';

let seed = 12345;
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
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

t.test('parseQueryFast reads what dns2 reads, or declines', async (t) => {
  let fast = 0;
  let mismatches = 0;
  for (let i = 0; i < 5000; i++) {
    const msg = query();
    const a = parseQueryFast(msg);
    if (!a) continue;
    fast++;
    const b = parse(msg)!;
    const ha = a.header as unknown as Record<string, number>;
    const hb = b.header as unknown as Record<string, number>;
    const same =
      HEADER_FIELDS.every((f) => ha[f] === hb[f]) &&
      b.questions.length === 1 &&
      a.questions[0]!.name === b.questions[0]!.name &&
      a.questions[0]!.type === b.questions[0]!.type &&
      a.questions[0]!.class === b.questions[0]!.class;
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
