// The project's DNS codec (proxy/dns/wire.ts): differential against dns2 (a devDependency, kept as an
// independent reference) on random queries and answers, round trips on fuzzed bytes, and a table of
// hostile shapes it must refuse (pointer loops, forward pointers, overlong names, dots inside labels,
// lying lengths and counts). No sockets.
import t from 'tap';
import { Packet } from 'dns2';
import {
  buildQuery,
  buildResponse,
  encode,
  MAX_RECORDS,
  parseMessage,
  parseQuery,
  readAChain,
  typeName,
  type Message,
} from '../proxy/dns/wire.js';

let seed = Number(process.env.WIRE_TEST_SEED ?? 12345);
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return (seed >>> 8) % n; // the low bits of this generator repeat with a short period
};
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*\u00e9\u00ff\u0000 ';

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

const HEADER_FIELDS = ['id', 'qr', 'opcode', 'aa', 'tc', 'rd', 'ra', 'z', 'ad', 'cd', 'rcode'] as const;
type Rec = { name: string; type: number; class: number; ttl: number; address?: unknown; domain?: unknown };
// Authority records are not compared: dns2 decodes an NS record's rdata (and drops the section when it
// cannot), ours carries it raw and never reads it.

/** What a parse gives, as plain data, in the fields both codecs decode (A addresses, CNAME targets). */
const view = (
  p: { header: object; questions: Array<{ name: string; type: number; class: number }>; answers: Rec[] },
  sections = false,
) => ({
  header: Object.fromEntries(HEADER_FIELDS.map((f) => [f, (p.header as Record<string, number>)[f]])),
  questions: p.questions.map((q) => ({ name: q.name, type: q.type, class: q.class })),
  ...(sections && {
    answers: p.answers.map((r) => ({
      name: r.name,
      type: r.type,
      class: r.class,
      ttl: r.ttl,
      ...(r.type === 1 && { address: r.address }),
      ...(r.type === 5 && { domain: r.domain }),
    })),
  }),
});

const dns2Parse = (msg: Buffer) => {
  try {
    return Packet.parse(msg);
  } catch {
    return undefined;
  }
};

t.test('parseQuery reads what dns2 reads, or declines', async (t) => {
  let parsed = 0;
  let mismatches = 0;
  for (let i = 0; i < 5000; i++) {
    const msg = query();
    const a = parseQuery(msg);
    if (!a) continue;
    parsed++;
    const b = dns2Parse(msg);
    const same = !!b && JSON.stringify(view(a)) === JSON.stringify(view(b));
    if (!same && mismatches++ < 3) t.fail(`differs on ${msg.toString('hex')}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.ok(parsed > 2000, `most queries parse (${parsed})`);
});

t.test('encode(buildResponse()) writes what dns2 writes, and never fails on a parsed query', async (t) => {
  let mismatches = 0;
  let compared = 0;
  for (let i = 0; i < 5000; i++) {
    const msg = query();
    const req = parseQuery(msg);
    if (!req || req.questions.length !== 1) continue;
    const ips = Array.from({ length: rnd(4) }, () => `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`);
    const ttl = [0, 1, 60, 3600, 0x7fffffff, 0x80000000, 0xffffffff][rnd(7)]!;
    const rcode = rnd(6);
    const ours = encode(buildResponse(req, rcode, ips, ttl)).toString('hex');
    const ref = dns2Parse(msg);
    if (!ref) continue;
    let theirs: string;
    try {
      theirs = Packet.createResponseFromRequest(ref).toBuffer().toString('hex');
      const res = Packet.createResponseFromRequest(ref);
      res.header.ra = 1;
      res.header.rcode = rcode;
      for (const address of ips) res.answers.push({ name: ref.questions[0]!.name, type: 1, class: 1, ttl, address } as never);
      theirs = res.toBuffer().toString('hex');
    } catch {
      continue; // dns2 cannot write some names it reads (a NUL label); ours can
    }
    compared++;
    if (ours !== theirs && mismatches++ < 3) t.fail(`differs for ${JSON.stringify(req.questions[0])}: ${ours} vs ${theirs}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.ok(compared > 2000, `compared ${compared}`);
});

t.test('a typical answer', async (t) => {
  const req = new Packet();
  req.header.id = 7;
  req.header.rd = 1;
  req.questions.push({ name: 'api.openai.com', type: 1, class: 1 } as never);
  const parsed = parseQuery(req.toBuffer());
  t.same(parsed?.questions, [{ name: 'api.openai.com', type: 1, class: 1 }]);
  const res = buildResponse(parsed!, 0, ['203.0.113.7', '198.51.100.1'], 300);
  const ref = Packet.createResponseFromRequest(req);
  ref.header.ra = 1;
  for (const address of ['203.0.113.7', '198.51.100.1'])
    ref.answers.push({ name: 'api.openai.com', type: 1, class: 1, ttl: 300, address } as never);
  t.ok(encode(res).equals(ref.toBuffer()));
});

/** A random upstream-style answer built with dns2 (names compressed by its encoder), sometimes damaged. */
function answer(): { bytes: Buffer; damaged: boolean } {
  const p = new Packet();
  p.header.id = rnd(0x10000);
  p.header.qr = 1;
  p.header.rd = 1;
  p.header.ra = rnd(2) as 0 | 1;
  p.header.rcode = [0, 0, 0, 3, 2, rnd(16)][rnd(6)]!;
  const names = [
    'api.openai.com',
    'Edge.Example.NET',
    'a.b.c.d.e.f.example.org',
    'x.api.openai.com',
    `${label().toString('latin1')}.example`,
  ];
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
      p.answers.push({
        name: rnd(4) ? owner : pick(),
        type: 1,
        class: rnd(8) ? 1 : 3,
        ttl: [60, 0, 0x80000001, rnd(1 << 30)][rnd(4)]!,
        address: `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`,
      } as never);
    }
  }
  if (rnd(8) === 0) p.authorities.push({ name: 'example.org', type: 2, class: 1, ttl: 60, ns: 'ns.example.org' } as never);
  if (rnd(8) === 0) p.answers.push({ name: owner, type: 28, class: 1, ttl: 60, address: '2001:db8::1' } as never);
  if (rnd(8) === 0) p.answers.push({ name: owner, type: 16, class: 1, ttl: 60, data: ['v=spf1 -all'] } as never);
  let b: Buffer;
  try {
    b = p.toBuffer();
  } catch {
    return { bytes: Buffer.alloc(0), damaged: true };
  }
  const damage = rnd(6);
  if (damage === 0) b = b.subarray(0, rnd(b.length + 1));
  else if (damage === 1 && b.length > 12) b[12 + rnd(b.length - 12)] = rnd(256);
  else if (damage === 2 && b.length > 13) b.writeUInt16BE(0xc000 | rnd(b.length + 8), 12 + rnd(b.length - 13));
  else return { bytes: b, damaged: false };
  return { bytes: b, damaged: true };
}

t.test('parseMessage reads what dns2 reads, or declines; every undamaged answer parses', async (t) => {
  let parsed = 0;
  let mismatches = 0;
  let undamagedRefused = 0;
  for (let i = 0; i < 5000; i++) {
    const { bytes, damaged } = answer();
    const a = parseMessage(bytes);
    if (!a) {
      if (!damaged && bytes.length && undamagedRefused++ < 3) t.fail(`refused an undamaged answer ${bytes.toString('hex')}`);
      continue;
    }
    parsed++;
    const b = dns2Parse(bytes);
    const same = !!b && JSON.stringify(view(a, true)) === JSON.stringify(view(b, true));
    if (!same && mismatches++ < 3)
      t.fail(`differs on ${bytes.toString('hex')}: ${JSON.stringify(view(a, true))} vs ${b && JSON.stringify(view(b, true))}`);
  }
  t.equal(mismatches, 0, 'no differences');
  t.equal(undamagedRefused, 0, 'every well-formed answer parses (all record types)');
  t.ok(parsed > 2500, `most answers parse (${parsed})`);
});

t.test('buildQuery writes what dns2 writes; a name that cannot be sent is refused, not mangled', async (t) => {
  const names = ['api.openai.com', 'a', `${'a'.repeat(63)}.example`, 'Ex\u00e9.com', `${'abcdefghi.'.repeat(24)}com`];
  for (let i = 0; i < 300; i++) names.push(`${label().toString('latin1')}.${label().toString('latin1')}`);
  let mismatches = 0;
  for (const name of names) {
    const { id, bytes } = buildQuery(name);
    const p = new Packet();
    p.header.id = id;
    p.header.rd = 1;
    p.questions.push({ name, type: 1, class: 1 } as never);
    let ref: Buffer | undefined;
    try {
      ref = p.toBuffer();
    } catch {
      continue;
    }
    if (!bytes.equals(ref) && mismatches++ < 3) t.fail(`differs for ${JSON.stringify(name)}`);
  }
  t.equal(mismatches, 0, 'no differences');
  for (const bad of [`${'a'.repeat(64)}.example`, 'a..b', '.a', 'ex\u0100.com', `${'abcdefghi.'.repeat(26)}com`]) {
    t.throws(() => buildQuery(bad), { name: 'Malformed', code: 'ERR_DNS_MALFORMED' }, JSON.stringify(bad));
  }
});

// ---- hostile shapes --------------------------------------------------------------------------------

const head = (flags: number, qd: number, an = 0, ns = 0, ar = 0) => {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0x1234, 0);
  b.writeUInt16BE(flags, 2);
  [qd, an, ns, ar].forEach((c, i) => b.writeUInt16BE(c, 4 + 2 * i));
  return b;
};
const name = (...labels: string[]) =>
  Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
const u16 = (...v: number[]) => Buffer.concat(v.map((x) => Buffer.from([x >> 8, x & 0xff])));
const u32 = (v: number) => Buffer.from([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
const QA = Buffer.concat([name('api', 'openai', 'com'), u16(1, 1)]);
const rr = (owner: Buffer, type: number, rdata: Buffer, ttl = 60, length = rdata.length) =>
  Buffer.concat([owner, u16(type, 1), u32(ttl), u16(length), rdata]);
const PTR_Q = Buffer.from([0xc0, 12]); // points at the question's name

t.test('queries: hostile names are refused', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['name points at itself', Buffer.concat([head(0x100, 1), Buffer.from([0xc0, 12]), u16(1, 1)])],
    ['two-pointer loop', Buffer.concat([head(0x100, 1), Buffer.from([0xc0, 14, 0xc0, 12]), u16(1, 1)])],
    ['forward pointer', Buffer.concat([head(0x100, 1), Buffer.from([1, 0x61, 0xc0, 20]), u16(1, 1), name('b')])],
    // id 0x0161 and flags 0x0100 read as labels: "a", "\0", then the zero of the count: a name, if allowed
    ['pointer into the header', Buffer.concat([u16(0x0161, 0x0100, 1, 0, 0, 0), Buffer.from([0xc0, 0]), u16(1, 1)])],
    ['reserved label type 0x40', Buffer.concat([head(0x100, 1), Buffer.from([0x41, 0x61, 0]), u16(1, 1)])],
    ['reserved label type 0x80', Buffer.concat([head(0x100, 1), Buffer.from([0x81, 0x61, 0]), u16(1, 1)])],
    ['a dot inside a label', Buffer.concat([head(0x100, 1), name('allowed.test'), u16(1, 1)])],
    ['name over 255 octets', Buffer.concat([head(0x100, 1), name(...Array.from({ length: 4 }, () => 'a'.repeat(63))), u16(1, 1)])],
    ['label runs past the end', Buffer.concat([head(0x100, 1), Buffer.from([10, 0x61, 0x62])])],
    ['no terminating zero', Buffer.concat([head(0x100, 1), Buffer.from([1, 0x61])])],
    ['question type cut short', Buffer.concat([head(0x100, 1), name('a'), Buffer.from([0, 1, 0])])],
    ['more questions claimed than present', Buffer.concat([head(0x100, 2), name('a'), u16(1, 1)])],
    ['shorter than a header', Buffer.alloc(11)],
    ['pointer cut short', Buffer.concat([head(0x100, 1), Buffer.from([1, 0x61, 0xc0])])],
  ];
  for (const [what, msg] of cases) t.equal(parseQuery(msg), undefined, what);
  // at the bounds: exactly 255 octets is a name
  const max = name('a'.repeat(63), 'a'.repeat(63), 'a'.repeat(63), 'a'.repeat(61));
  t.equal(max.length, 255);
  t.equal(parseQuery(Buffer.concat([head(0x100, 1), max, u16(1, 1)]))?.questions[0]?.name.length, 253, '255 octets parse');
  t.equal(parseQuery(Buffer.concat([head(0x100, 1), Buffer.from([0]), u16(1, 1)]))?.questions[0]?.name, '', 'the root');
  // a dot reached through a pointer is refused too (the name lives in the answer, the pointer in a second question)
  const viaPointer = Buffer.concat([
    head(0x100, 2),
    name('x'),
    u16(1, 1),
    Buffer.from([3, 0x61, 0x2e, 0x62, 0]),
    u16(1, 1),
    Buffer.from([1, 0x63, 0xc0, 19]),
    u16(1, 1),
  ]);
  t.equal(parseQuery(viaPointer), undefined, 'a dotted label reached by a pointer');
  const ok = parseQuery(
    Buffer.concat([head(0x100, 2), name('api', 'openai', 'com'), u16(1, 1), Buffer.from([1, 0x78, 0xc0, 16]), u16(28, 1)]),
  );
  t.same(
    ok?.questions.map((q) => q.name),
    ['api.openai.com', 'x.openai.com'],
    'a backward pointer into a name',
  );
});

t.test('answers: every record type parses, unknown ones as raw rdata; hostile records are refused', async (t) => {
  const rdataSoa = Buffer.concat([name('ns', 'example'), name('host', 'example'), u32(1), u32(2), u32(3), u32(4), u32(5)]);
  const opt = Buffer.concat([Buffer.from([0]), u16(41, 1232), u32(0), u16(0)]);
  const msg = Buffer.concat([
    head(0x8180, 1, 4, 1, 1),
    QA,
    rr(PTR_Q, 5, name('edge', 'cdn', 'test')),
    rr(name('edge', 'cdn', 'test'), 1, Buffer.from([203, 0, 113, 7]), 30),
    rr(name('edge', 'cdn', 'test'), 28, Buffer.alloc(16, 1)),
    rr(PTR_Q, 99, Buffer.from('opaque')),
    rr(name('cdn', 'test'), 6, rdataSoa),
    opt,
  ]);
  const m = parseMessage(msg);
  t.ok(m, 'parses');
  t.same(
    m!.answers.map((r) => [r.type, r.address ?? r.domain ?? r.rdata?.toString('hex')]),
    [
      [5, 'edge.cdn.test'],
      [1, '203.0.113.7'],
      [28, '01'.repeat(16)],
      [99, Buffer.from('opaque').toString('hex')],
    ],
  );
  t.same(m!.authorities[0]?.rdata, rdataSoa, 'SOA carried raw');
  t.same([m!.additionals[0]?.type, m!.additionals[0]?.class, m!.additionals[0]?.name], [41, 1232, ''], 'OPT carried raw');
  t.same(readAChain(m!, 'API.openai.com'), { ips: ['203.0.113.7'], ttl: 30 }, 'the A chain through the CNAME, other types ignored');
  t.equal(typeName(99), 'SPF');
  t.equal(typeName(4242), 'TYPE4242');

  const answer1 = (...records: Buffer[]) => Buffer.concat([head(0x8180, 1, records.length), QA, ...records]);
  const cases: Array<[string, Buffer]> = [
    ['A record of 5 bytes', answer1(rr(PTR_Q, 1, Buffer.from([1, 2, 3, 4, 5])))],
    ['A record of 3 bytes', answer1(rr(PTR_Q, 1, Buffer.from([1, 2, 3])))],
    ['rdata longer than the message', answer1(rr(PTR_Q, 16, Buffer.from('abc'), 60, 40))],
    ['CNAME target shorter than its rdata', answer1(rr(PTR_Q, 5, Buffer.concat([name('a'), Buffer.from([9, 9])])))],
    ['CNAME target longer than its rdata', answer1(rr(PTR_Q, 5, name('abc', 'def'), 60, 3))],
    ['CNAME target pointing forward', answer1(rr(PTR_Q, 5, Buffer.from([0xc0, 0x3f])), rr(name('zz'), 1, Buffer.from([1, 2, 3, 4])))],
    ['CNAME target pointing at itself', answer1(rr(PTR_Q, 5, Buffer.from([0xc0, 12 + QA.length + 12])))],
    ['CNAME target with a dot in a label', answer1(rr(PTR_Q, 5, name('evil.test')))],
    ['owner with a dot in a label', answer1(rr(name('api.openai', 'com'), 1, Buffer.from([1, 2, 3, 4])))],
    ['more answers claimed than present', Buffer.concat([head(0x8180, 1, 2), QA, rr(PTR_Q, 1, Buffer.from([1, 2, 3, 4]))])],
    ['record header cut short', Buffer.concat([head(0x8180, 1, 1), QA, PTR_Q, u16(1, 1)])],
    ['more records claimed than the bound', Buffer.concat([head(0x8180, 1, MAX_RECORDS), QA])],
  ];
  for (const [what, bytes] of cases) t.equal(parseMessage(bytes), undefined, what);
  // the record bound holds for well-formed messages too (parse cost): 512 records parse, 513 do not
  const aRecord = rr(PTR_Q, 1, Buffer.from([203, 0, 113, 1]));
  const many = (n: number) => Buffer.concat([head(0x8180, 1, n - 1), QA, ...Array.from({ length: n - 1 }, () => aRecord)]);
  t.equal(parseMessage(many(MAX_RECORDS))?.answers.length, MAX_RECORDS - 1, `${MAX_RECORDS} records (question included) parse`);
  t.equal(parseMessage(many(MAX_RECORDS + 1)), undefined, `${MAX_RECORDS + 1} records are refused`);
  t.ok(
    parseMessage(Buffer.concat([head(0x8180, 1, 1), QA, rr(PTR_Q, 1, Buffer.from([1, 2, 3, 4]))])),
    'the same shape, well formed, parses',
  );
  t.same(
    readAChain(parseMessage(answer1(rr(PTR_Q, 5, name('b', 'test')), rr(name('b', 'test'), 5, PTR_Q)))!, 'api.openai.com'),
    { ips: [], ttl: 0 },
    'a CNAME loop ends, empty',
  );
  t.same(
    readAChain(parseMessage(answer1(rr(PTR_Q, 1, Buffer.from([1, 2, 3, 4]), 0xfffffff0)))!, 'api.openai.com').ttl,
    0x7fffffff,
    'a TTL with the top bit set is clamped',
  );
});

t.test('encode: a name is compressed only where it is byte for byte the question (case kept)', async (t) => {
  const m: Message = {
    header: { id: 1, qr: 1, opcode: 0, aa: 0, tc: 0, rd: 1, ra: 1, z: 0, ad: 0, cd: 0, rcode: 0 },
    questions: [{ name: 'api.openai.com', type: 1, class: 1 }],
    answers: [
      { name: 'api.openai.com', type: 1, class: 1, ttl: 5, address: '203.0.113.1' },
      { name: 'API.openai.com', type: 1, class: 1, ttl: 5, address: '203.0.113.2' },
    ],
    authorities: [],
    additionals: [],
  };
  const back = parseMessage(encode(m));
  t.same(
    back?.answers.map((r) => r.name),
    ['api.openai.com', 'API.openai.com'],
  );
  t.ok(encode(m).includes(Buffer.from([0xc0, 0x0c, 0, 1])), 'the first answer points at the question');
});

t.test('fuzz: any bytes parse to a message or to undefined, never a throw; what parses round-trips', async (t) => {
  const started = Date.now();
  let parsed = 0;
  let roundTrips = 0;
  let failures = 0;
  const seeds = [query, () => answer().bytes];
  for (let i = 0; i < 20000; i++) {
    let b: Buffer;
    if (i % 4 === 0) b = Buffer.from(Array.from({ length: rnd(80) }, () => rnd(256)));
    else {
      b = Buffer.from(seeds[i % 2]!());
      for (let f = 1 + rnd(4); f > 0 && b.length; f--) b[rnd(b.length)] = rnd(256);
    }
    let m: Message | undefined;
    try {
      m = parseMessage(b);
      parseQuery(b);
    } catch (err) {
      if (failures++ < 3) t.fail(`threw ${(err as Error).message} on ${b.toString('hex')}`);
      continue;
    }
    if (!m) continue;
    parsed++;
    const records = [...m.answers, ...m.authorities, ...m.additionals];
    if (records.some((r) => [2, 3, 4, 6, 7, 8, 9, 12, 14, 15].includes(r.type))) continue; // compressed names inside rdata
    const again = parseMessage(encode(m));
    // z is written as 0; a CNAME's rdata is rewritten uncompressed (its target, compared as domain, is the same)
    const plain = (rs: Message['answers']) => rs.map((r) => (r.type === 5 ? { ...r, rdata: undefined } : r));
    const strip = (x: Message) =>
      JSON.stringify({
        ...x,
        header: { ...x.header, z: 0 },
        answers: plain(x.answers),
        authorities: plain(x.authorities),
        additionals: plain(x.additionals),
      });
    if (!again || strip(again) !== strip(m)) {
      if (failures++ < 3) t.fail(`round trip differs on ${b.toString('hex')}`);
    } else roundTrips++;
  }
  t.equal(failures, 0, 'no throw, no round-trip difference');
  t.ok(parsed > 1000 && roundTrips > 1000, `parsed ${parsed}, round-tripped ${roundTrips}`);
  t.ok(Date.now() - started < 30_000, 'bounded time');
});
