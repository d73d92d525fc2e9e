// ATTACK16 (an attack session on the DNS side and the allowlist). Findings, each fixed:
// - F1 (medium): DNS over TCP had no backpressure: a client that sent queries and never read the
//   answers made the gateway hold them all (1 MB of queries for a name with 200 addresses: +142 MB).
//   Now nothing more is read from a client while its answers are unread (proxy/dns/tcp.ts).
// - F2 (low): a TCP message announced longer than any query answered was read to its end (up to 64 KiB,
//   the buffer copied again per read: quadratic): now the connection closes once the length is read.
// - F3 (low): an upstream answer landing after a reload removed its name was cached anyway, and served
//   unasked (and fed to the firewall) once the name was allowed again. Now it is not kept.
// - F4 (low): the watcher hashed one read of the allowlist file and the reload parsed another: a file
//   rewritten in place could be whole at the first and torn at the second, and the torn rules stayed in
//   force (the watcher saw no change after). The reload now parses the bytes the watcher hashed.
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Audit } from '../proxy/audit.js';
import { Resolver } from '../proxy/dns/resolver.js';
import { startDnsServer } from '../proxy/dns/server.js';
import { MAX_TCP_PIPELINE } from '../proxy/dns/tcp.js';
import type { UpstreamResolver, UpstreamResult } from '../proxy/dns/upstream.js';
import { buildQuery, parseMessage } from '../proxy/dns/wire.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { watchFile, type FileRead } from '../proxy/watch-file.js';
import { FakeUpstream, loopbackOrPublic } from './harness/inproc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet: Audit = { write: () => undefined, close: () => Promise.resolve() };

/** A DNS server answering `many.test` with 200 addresses (an answer ~100 times its query). */
async function server(t: Test) {
  const ips = Array.from({ length: 200 }, (_, i) => `${i < 100 ? '203.0.113' : '198.51.100'}.${(i % 100) + 1}`);
  const r = mergeSources({ defaults: false, flags: ['many.test'] });
  if (!r.ok) throw new Error(r.errors.join('; '));
  const allowlist = r.allowlist;
  const reports: string[] = [];
  const dns = await startDnsServer('127.0.0.1', 0, {
    allowlist: () => allowlist,
    resolver: new Resolver(new FakeUpstream({ 'many.test': { a: ips, ttl: 3600 } }), { guard: loopbackOrPublic }),
    audit: quiet,
    report: (m) => void reports.push(m),
  });
  t.teardown(() => dns.close());
  return { dns, reports };
}
const framed = (q: Buffer) => Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);

t.test('F1: a TCP client that does not read its answers cannot make the gateway hold them', async (t) => {
  const { dns, reports } = await server(t);
  const batch = Buffer.concat(Array.from({ length: 30 }, () => framed(buildQuery('many.test').bytes)));
  const before = process.memoryUsage().arrayBuffers;
  const s = net.connect(dns.tcp.port, '127.0.0.1');
  s.on('error', () => undefined);
  s.pause(); // never reads
  await new Promise<void>((r) => s.once('connect', () => r()));
  const deadline = Date.now() + 15_000;
  // ~1 MB of queries (36,000), bounded in count and time.
  for (let i = 0; i < 1200 && Date.now() < deadline && !s.destroyed; i++) {
    s.write(batch);
    await new Promise((r) => setImmediate(r));
    if (i % 20 === 0) await sleep(2);
  }
  await sleep(500);
  const grown = process.memoryUsage().arrayBuffers - before;
  t.ok(grown < 40e6, `the gateway held a bounded amount (grew ${(grown / 1e6).toFixed(1)} MB; was +142 MB)`);
  // The client reads now: it gets answers (the connection was held, not broken).
  let got = 0;
  s.on('data', (c: Buffer) => (got += c.length));
  s.resume();
  await sleep(500);
  t.ok(got > 0, 'answers come once the client reads');
  s.destroy();
  t.same(reports, []);
});

t.test('more queries in one write than are answered at a time: every one is answered, then the FIN', async (t) => {
  const { dns } = await server(t);
  const N = MAX_TCP_PIPELINE * 3 + 5;
  const ids = new Set<number>();
  const queries = Array.from({ length: N }, () => {
    const q = buildQuery('many.test');
    ids.add(q.id);
    return framed(q.bytes);
  });
  const s = net.connect(dns.tcp.port, '127.0.0.1');
  s.on('error', () => undefined);
  let buf = Buffer.alloc(0);
  const seen = new Set<number>();
  s.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const m = parseMessage(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
      if (m && m.answers.length === 200) seen.add(m.header.id);
    }
  });
  const ended = new Promise<void>((r) => s.once('end', () => r()));
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.end(Buffer.concat(queries)); // all in one write, then the client's FIN
  await Promise.race([ended, sleep(5000)]);
  t.equal(seen.size, ids.size, `all ${ids.size} distinct queries answered, with their 200 addresses`);
  t.ok(s.readableEnded, 'the server ended the connection after the last answer');
  s.destroy();
});

t.test('F2: a TCP message announced longer than any query is refused as soon as its length is read', async (t) => {
  const { dns } = await server(t);
  for (const len of [0xffff, 4097]) {
    const s = net.connect(dns.tcp.port, '127.0.0.1');
    s.on('error', () => undefined);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(Buffer.from([len >> 8, len & 0xff]));
    s.write(Buffer.alloc(64, 0x41));
    const done = await Promise.race([closed.then(() => true), sleep(1000).then(() => false)]);
    t.ok(done, `length ${len}: the server closed the connection at once`);
    s.destroy();
  }
  // A message cut short by the client's FIN: closed, nothing answered.
  const s = net.connect(dns.tcp.port, '127.0.0.1');
  s.on('error', () => undefined);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.end(framed(buildQuery('many.test').bytes).subarray(0, 10));
  t.ok(await Promise.race([closed.then(() => true), sleep(1000).then(() => false)]), 'a message cut short: closed');
});

t.test('F3: an answer that lands after its name was removed is not served once the name is allowed again', async (t) => {
  let allowed = true;
  let asked = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let ip = '203.0.113.66';
  const upstream: UpstreamResolver = {
    resolveA: async (): Promise<UpstreamResult> => {
      asked++;
      if (asked === 1) await gate;
      return { rcode: 0, ips: [ip], ttl: 3600, upstream: 'fake' };
    },
  };
  const fed: string[][] = [];
  const resolver = new Resolver(upstream, {
    allowed: () => allowed,
    onResolved: async (_n, ips) => void fed.push([...ips]),
    guard: () => true,
  });
  const first = resolver.lookup('x.test');
  allowed = false; // a reload removes x.test ...
  resolver.forget(() => !allowed);
  release(); // ... and then the upstream's answer lands
  t.equal((await first).status, 'revoked', 'the late answer is refused');
  ip = '203.0.113.77';
  allowed = true; // allowed again later
  resolver.forget(() => !allowed);
  const again = await resolver.lookup('x.test');
  t.equal(asked, 2, 'the upstream is asked afresh');
  t.match(again, { status: 'ok', ips: ['203.0.113.77'] }, "today's answer is served");
  t.same(fed, [['203.0.113.77']], 'only that address went to the firewall');
});

t.test('F4: the watcher gives the reload the bytes it hashed, and counts changes from what was loaded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'attack16-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'allowed_domains.txt');
  writeFileSync(file, 'a.test\n');
  const got: FileRead[] = [];
  // What was loaded at the start differs from the file (it was torn when read): the first check reloads.
  const w = watchFile(file, (r) => void got.push(r), { pollMs: 100, debounceMs: 20, initial: { bytes: Buffer.from('a.') } });
  t.teardown(w.stop);
  await sleep(300);
  t.equal(got.length, 1, 'a file that differs from what was loaded at the start is reloaded');
  t.equal('bytes' in got[0]! && got[0].bytes.toString(), 'a.test\n', 'with the bytes that were hashed');
  // A reload the watcher did not start (SIGHUP) loaded a torn read: the whole file is reloaded.
  w.loaded({ bytes: Buffer.from('a.t') });
  await sleep(300);
  t.equal(got.length, 2, 'a file that differs from what a SIGHUP reload loaded is reloaded');
  t.equal('bytes' in got[1]! && got[1].bytes.toString(), 'a.test\n', 'with the whole file');
  // Gone, then back.
  rmSync(file);
  await sleep(300);
  t.match(got[2], { missing: true }, 'a removed file is a change (no file rules)');
});
