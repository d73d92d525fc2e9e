// The tunnel's byte path (proxy/http/relay.ts): the upstream reads into a buffer of its own that is
// reused from read to read. A buffer reused while a write of it is still queued would send later bytes
// in place of earlier ones, so every case checks the bytes end to end (SHA-256), with a client that
// stalls now and then so that writes queue. In-process on 127.0.0.1 (no root), then through the real
// gateway in a test namespace (a /tcp tunnel to an echo server, both directions at once).
import t from 'tap';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { READ_MAX, READ_START, RELAY_BUFFER, UpstreamReads, relay } from '../proxy/http/relay.js';
import { startCore, nodeIn, RULES, type Core } from './harness/core.js';

/** Deterministic bytes that differ from chunk to chunk (a swapped or repeated chunk changes the hash). */
function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(bytes + 3);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b.subarray(0, bytes);
}
const sha = (b: Buffer | Buffer[]) => {
  const h = createHash('sha256');
  for (const c of Array.isArray(b) ? b : [b]) h.update(c);
  return h.digest('hex');
};
const listen = (s: net.Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as net.AddressInfo).port)));

interface Relayed {
  hash: string;
  bytes: number;
  reads: UpstreamReads;
  upstreamBytesRead: number;
  /** Most bytes the relay's client side ever held unsent. */
  peakQueued: number;
}

/**
 * origin → (upstream socket with UpstreamReads) → relay → client. The origin sends `data` after a
 * small first chunk that the "inspection" sink sees; the client pauses `stallMs` every `stallEvery` bytes.
 */
async function throughRelay(
  data: Buffer,
  opts: { stallEvery: number; stallMs: number; piece?: number; firstStallMs?: number },
): Promise<Relayed> {
  const origin = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(Buffer.from('HELLO\n'));
    // After the "pass": the rest, at once or in small pieces a tick apart (short reads: the buffer
    // stays small and reads go on while earlier writes still wait).
    s.once('data', () => {
      if (!opts.piece) return void s.end(data);
      let off = 0;
      const next = () => {
        if (off >= data.length) return void s.end();
        const end = Math.min(off + opts.piece!, data.length);
        const ok = s.write(data.subarray(off, end));
        off = end;
        if (ok) setImmediate(next);
        else s.once('drain', next);
      };
      next();
    });
  });
  const relayServer = net.createServer();
  const [originPort, relayPort] = [await listen(origin), await listen(relayServer)];
  const reads = new UpstreamReads();
  let peakQueued = 0;
  let upstreamBytesRead = 0;
  relayServer.on('connection', (client) => {
    client.on('error', () => undefined);
    const upstream = net.connect({ host: '127.0.0.1', port: originPort, noDelay: true, onread: reads.onread });
    upstream.on('error', () => client.destroy());
    const seen: Buffer[] = [];
    reads.inspectWith((chunk) => {
      seen.push(chunk);
      client.write(chunk);
      if (Buffer.concat(seen).includes('\n')) {
        reads.relayTo(upstream, client);
        relay(client, upstream);
        upstream.write('go');
      }
    });
    // What waits unsent right after each write (the relay's writes go through client.write).
    const write = client.write.bind(client) as (chunk: Buffer) => boolean;
    client.write = ((chunk: Buffer) => {
      const ok = write(chunk);
      peakQueued = Math.max(peakQueued, client.writableLength);
      return ok;
    }) as typeof client.write;
    upstream.once('close', () => (upstreamBytesRead = upstream.bytesRead));
  });
  const got: Buffer[] = [];
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const c = net.connect(relayPort, '127.0.0.1');
    let sinceStall = 0;
    let firstStall = opts.firstStallMs ?? 0;
    c.on('data', (chunk: Buffer) => {
      got.push(Buffer.from(chunk));
      bytes += chunk.length;
      sinceStall += chunk.length;
      // One long stall early on: the socket buffers fill whatever the machine's speed, so writes queue.
      if (firstStall && bytes >= 64 * 1024) {
        c.pause();
        setTimeout(() => c.resume(), firstStall);
        firstStall = 0;
      } else if (sinceStall >= opts.stallEvery) {
        sinceStall = 0;
        c.pause();
        setTimeout(() => c.resume(), opts.stallMs);
      }
    });
    c.on('end', () => resolve());
    c.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 50));
  origin.close();
  relayServer.close();
  const all = Buffer.concat(got);
  return { hash: sha(all.subarray(6)), bytes: all.length - 6, reads, upstreamBytesRead, peakQueued };
}

t.test('in-process: every byte arrives in order while the client stalls (queued writes keep their buffer)', async (t) => {
  const data = pattern(24 * 1024 * 1024, 7);
  const r = await throughRelay(data, { stallEvery: 512 * 1024, stallMs: 5, firstStallMs: 300 });
  t.equal(r.bytes, data.length, 'all bytes');
  t.equal(r.hash, sha(data), 'the same bytes, in order');
  t.equal(r.upstreamBytesRead, data.length + 6, 'bytesRead counts what onread delivered (the tunnel_close line uses it)');
  t.ok(
    r.peakQueued <= RELAY_BUFFER + READ_MAX,
    `the client side held at most ${r.peakQueued} bytes unsent (bound ${RELAY_BUFFER} + one read)`,
  );
});

t.test('in-process: short reads go on while the client stalls: no buffer is reused under a queued write', async (t) => {
  const data = pattern(24 * 1024 * 1024, 5);
  const r = await throughRelay(data, { stallEvery: 256 * 1024, stallMs: 20, piece: 4096, firstStallMs: 500 });
  t.equal(r.bytes, data.length, 'all bytes');
  t.equal(r.hash, sha(data), 'the same bytes, in order');
  t.ok(r.peakQueued > 0, `writes did queue (peak ${r.peakQueued} bytes)`);
});

t.test('in-process: a client that keeps up gets the same bytes (the buffer is reused, then grown)', async (t) => {
  const data = pattern(16 * 1024 * 1024 + 123, 11);
  const r = await throughRelay(data, { stallEvery: Number.MAX_SAFE_INTEGER, stallMs: 0 });
  t.equal(r.bytes, data.length);
  t.equal(r.hash, sha(data));
});

t.test('in-process: the read buffer starts small and grows only on full reads; the check gets its own copies', async (t) => {
  const reads = new UpstreamReads();
  const first = (reads.onread.buffer as () => Buffer)();
  t.equal(first.length, READ_START, 'an idle tunnel holds READ_START');
  const cb = reads.onread.callback;
  const sink: Buffer[] = [];
  reads.inspectWith((c) => sink.push(c));
  first.fill(0x61, 0, 10);
  cb(10, first);
  const second = (reads.onread.buffer as () => Buffer)();
  t.equal(second.length, READ_START, 'a short read does not grow it');
  second.fill(0x62);
  t.equal(sink[0]!.toString(), 'a'.repeat(10), 'the next read does not change what the check was given (a copy of its own)');
  cb(second.length, second);
  t.equal(sink.length, 2);
  t.equal(sink[0]!.length, 10, 'the sink gets exactly the bytes read');
  t.equal(sink[1]!.length, READ_START);
  const from = new net.Socket();
  const to = new net.Socket();
  reads.relayTo(from, to);
  t.ok((reads.onread.buffer as () => Buffer)().length > READ_START, 'a full read grows it (relaying)');
  from.destroy();
  to.destroy();
});

t.test(
  'in-process: short reads share one buffer (copied out), so an idle or ending tunnel holds none; bulk reads get their own',
  async (t) => {
    const a = new UpstreamReads();
    const b = new UpstreamReads();
    const got: Buffer[] = [];
    const from = new net.Socket();
    const to = new net.Socket();
    a.relayTo(from, to);
    b.relayTo(from, to);
    (to as unknown as { write: (c: Buffer) => boolean }).write = (c: Buffer) => (got.push(c), true);
    const bufA = (a.onread.buffer as () => Buffer)();
    t.equal(bufA, (b.onread.buffer as () => Buffer)(), 'two relaying tunnels without bulk data read into the same buffer');
    bufA.fill(0x63, 0, 5);
    a.onread.callback(5, bufA);
    bufA.fill(0x64);
    t.equal(got[0]?.toString(), 'ccccc', 'what was relayed is a copy (the shared buffer is reused by the next read)');
    a.onread.callback(bufA.length, bufA);
    const own = (a.onread.buffer as () => Buffer)();
    t.not(own, bufA, 'after a full read (bulk data) the tunnel reads into a buffer of its own');
    t.ok(own.length > READ_START, 'and a larger one');
    t.equal((b.onread.buffer as () => Buffer)(), bufA, 'the other tunnel still shares');
    from.destroy();
    to.destroy();
  },
);

// Through the gateway: a /tcp tunnel to the echo server, the client writing while it reads and stalls.
let core: Core;
t.test('through the gateway', async (t) => {
  core = await startCore({ flagRules: RULES });
  t.teardown(() => core.close());
  const size = 32 * 1024 * 1024;
  const r = await nodeIn<{ sentHash: string; gotHash: string; got: number; banner: string }>(
    core.ns,
    `import net from 'node:net'; import { createHash } from 'node:crypto';
     const size = ${size};
     const data = Buffer.allocUnsafe(size); let x = 99;
     for (let i = 0; i < size; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; data.writeUInt32LE(x >>> 0, i); }
     const s = net.connect(3128, '127.0.0.1');
     let head = Buffer.alloc(0); let got = 0; const h = createHash('sha256'); let banner = ''; let since = 0; let started = false;
     s.on('data', (c) => {
       if (!started) {
         head = Buffer.concat([head, c]);
         const i = head.indexOf('\\r\\n\\r\\n'); if (i < 0) return;
         const j = head.indexOf('\\r\\n', i + 4); if (j < 0) return;
         banner = head.subarray(i + 4, j).toString(); started = true;
         const rest = head.subarray(j + 2); got += rest.length; h.update(rest);
         // the client sends the whole pattern in 1 MiB pieces, honouring backpressure
         let off = 0; const more = () => { while (off < size) { const n = Math.min(1 << 20, size - off); const ok = s.write(data.subarray(off, off + n)); off += n; if (!ok) return void s.once('drain', more); } };
         more();
       } else { got += c.length; h.update(c); since += c.length; }
       if (since > (1 << 20)) { since = 0; s.pause(); setTimeout(() => s.resume(), 5); }
       if (got >= size) { console.log(JSON.stringify({ sentHash: createHash('sha256').update(data).digest('hex'), gotHash: h.digest('hex'), got, banner })); process.exit(0); }
     });
     s.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
     s.write('CONNECT allowed.test:2222 HTTP/1.1\\r\\nHost: allowed.test:2222\\r\\n\\r\\n');`,
    120_000,
  );
  t.match(r.banner, /^BANNER /, 'the server spoke first (read while inspecting)');
  t.equal(r.got, size, 'every echoed byte came back');
  t.equal(r.gotHash, r.sentHash, 'the same bytes, in order, both ways');
  const close = await core.gateway.waitForAudit((e) => e.event === 'tunnel_close' && e.port === 2222);
  t.ok(
    (close.bytes_down as number) >= size && (close.bytes_up as number) >= size,
    `tunnel_close counts the bytes (up ${close.bytes_up}, down ${close.bytes_down})`,
  );
});
