// ATTACK10 (F4): the first-bytes check re-read every byte it held at each read. A ClientHello sent as
// thousands of one-byte TLS records (or any bytes trickled one read at a time) cost the gateway the
// square of their length: one tunnel held the event loop for 100 ms at a time, 32 of them stalled every
// other connection for seconds. Now each record (and each `/tcp` first line) is read once, and a
// ClientHello in more than MAX_HELLO_RECORDS records is refused.
// The work is measured as bytes copied by Buffer.concat (the quadratic part), not as time.
import t from 'tap';
import { FirstBytes, MAX_HELLO_BYTES, MAX_HELLO_RECORDS, type Verdict } from '../proxy/http/firstbytes.js';
import { clientHello, serverHello } from './harness/tls.js';

const host = 'allowed.test';
const rec = (type: number, body: Buffer) => Buffer.concat([Buffer.from([type, 3, 1, body.length >> 8, body.length & 0xff]), body]);
/** A handshake split into records of `size` bytes of body each. */
const fragmented = (hello: Buffer, size: number): Buffer => {
  const hs = hello.subarray(5);
  const out: Buffer[] = [];
  for (let o = 0; o < hs.length; o += size) out.push(rec(0x16, hs.subarray(o, o + size)));
  return Buffer.concat(out);
};

/** Run `fn`, counting the bytes Buffer.concat copies meanwhile. */
function copiedBy(fn: () => void): number {
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const b = concat(list, total);
    copied += b.length;
    return b;
  }) as typeof Buffer.concat;
  try {
    fn();
  } finally {
    Buffer.concat = concat;
  }
  return copied;
}

/** Feed `bytes` `step` at a time; the last verdict, the reads it took, and the bytes Buffer.concat copied meanwhile. */
function feed(check: FirstBytes, bytes: Buffer, step: number): { v: Verdict; reads: number; copied: number } {
  let v: Verdict = { kind: 'need-more' };
  let reads = 0;
  const copied = copiedBy(() => {
    for (let o = 0; o < bytes.length; o += step) {
      v = check.client(bytes.subarray(o, o + step));
      reads++;
      if (v.kind !== 'need-more' && v.kind !== 'forward') break;
    }
  });
  return { v, reads, copied };
}

t.test('a ClientHello in more than MAX_HELLO_RECORDS records is refused at once', async (t) => {
  // A handshake header announcing a large message, then one byte per record.
  const body = Buffer.alloc(20_000, 0x41);
  body[0] = 1;
  body.writeUIntBE(body.length - 4, 1, 3);
  const bytes = Buffer.concat([...body].map((b) => rec(0x16, Buffer.from([b]))));
  const r = feed(new FirstBytes(host, 'tls'), bytes, bytes.length);
  t.match(r.v, { kind: 'reject', reason: 'sni-mismatch', detail: `a ClientHello in more than ${MAX_HELLO_RECORDS} records` });
  t.ok(r.copied < 64 * 1024, `work bounded: ${r.copied} bytes copied for ${bytes.length} read`);
});

t.test('bytes trickled one read at a time cost work in proportion to them, not to their square', async (t) => {
  // A ClientHello of ~60 KB in four records, read one byte at a time: each record is put together once.
  const big = Buffer.alloc(60_000);
  big[0] = 1;
  big.writeUIntBE(big.length - 4, 1, 3);
  const recs = [];
  for (let o = 0; o < big.length; o += 16_384) recs.push(rec(0x16, big.subarray(o, o + 16_384)));
  const hello = Buffer.concat(recs);
  const a = feed(new FirstBytes(host, 'tls'), hello, 1);
  t.equal(a.reads, hello.length, 'every byte read (the message is not a valid ClientHello: refused at its end)');
  t.match(a.v, { kind: 'reject' });
  t.ok(a.copied < 10 * hello.length, `TLS: ${a.copied} bytes copied for ${hello.length} read (quadratic: ~1.8 GB)`);
  // A /tcp rule's first line of text, trickled up to its limit.
  const line = Buffer.from('x'.repeat(MAX_HELLO_BYTES + 10));
  const b = feed(new FirstBytes(host, 'any'), line, 1);
  t.match(b.v, { kind: 'reject', reason: 'protocol-not-allowed' }, 'a line that never ends is refused');
  t.ok(b.copied < 10 * line.length, `/tcp line: ${b.copied} bytes copied for ${line.length} read`);
  // The origin's side, trickled too (its ServerHello at the end of a 16 KB record).
  const check = new FirstBytes(host, 'tls');
  t.match(check.client(clientHello(host)), { kind: 'forward' });
  const filler = rec(0x14, Buffer.alloc(16_000, 1));
  const server = Buffer.concat([filler, serverHello(false)]);
  let v: Verdict = { kind: 'need-more' };
  const copied = copiedBy(() => {
    for (let o = 0; o < server.length && v.kind === 'need-more'; o++) v = check.fromServer(server.subarray(o, o + 1));
  });
  t.match(v, { kind: 'pass' }, "the origin's hello ends the check");
  t.ok(copied < 10 * server.length, `origin: ${copied} bytes copied for ${server.length} read`);
});

t.test('a ClientHello split over a few records, in any reads, still passes; its bytes are sent on whole', async (t) => {
  const hello = fragmented(clientHello(host), 7);
  for (const step of [1, 3, 64, hello.length]) {
    const check = new FirstBytes(host, 'tls');
    const sent: Buffer[] = [];
    for (let o = 0; o < hello.length; o += step) {
      const v = check.client(hello.subarray(o, o + step));
      if (v.kind === 'forward') sent.push(v.bytes);
      else t.equal(v.kind, 'need-more');
    }
    t.ok(Buffer.concat(sent).equals(hello), `read ${step} at a time: every byte sent on once, in order`);
  }
});

t.test('a checked ClientHello is not read again: what follows it is judged on its own', async (t) => {
  // The ClientHello, then the start of a second handshake message, then application data in the middle of it.
  const check = new FirstBytes(host, 'tls');
  const v1 = check.client(Buffer.concat([clientHello(host), rec(0x16, Buffer.from([1, 0]))]));
  t.match(v1, { kind: 'forward' }, 'the ClientHello is sent on');
  const v2 = check.client(rec(0x17, Buffer.from([1, 2, 3])));
  t.match(v2, { kind: 'reject', detail: 'a record interleaved with a fragmented handshake message' });
});
