// ATTACK17 (a re-attack of the ATTACK16 fix, proxy/dns/tcp.ts): held up. Every query answered (more
// than 32 pending, slow ones, zero-length and response messages mixed in), the client's FIN answered
// after the last answer, nothing reported.
import net from 'node:net';
import t, { type Test } from 'tap';
import type { Audit } from '../proxy/audit.js';
import { Resolver } from '../proxy/dns/resolver.js';
import { startDnsServer } from '../proxy/dns/server.js';
import { buildQuery } from '../proxy/dns/wire.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { FakeUpstream, loopbackOrPublic } from './harness/inproc.js';

const quiet: Audit = { write: () => undefined, close: () => Promise.resolve() };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function server(t: Test) {
  const ips = Array.from({ length: 200 }, (_, i) => `203.0.${113 + (i >> 7)}.${(i % 100) + 1}`);
  const r = mergeSources({ defaults: false, flags: ['many.test', '*.slow.test'] });
  if (!r.ok) throw new Error(r.errors.join('; '));
  const allowlist = r.allowlist;
  const reports: string[] = [];
  const up = new FakeUpstream({ 'many.test': { a: ips, ttl: 3600 } });
  const slow = { resolveA: async (n: string) => (await sleep(n.startsWith('slow') ? 300 : 0), up.resolveA(n)) };
  const dns = await startDnsServer('127.0.0.1', 0, {
    allowlist: () => allowlist,
    resolver: new Resolver(slow, { guard: loopbackOrPublic }),
    audit: quiet,
    report: (m) => void reports.push(m),
  });
  t.teardown(() => dns.close());
  return { dns, reports };
}
const framed = (q: Buffer) => Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);

/** Send `payload` then FIN; read after `readAfterMs`; count framed answers until the server's FIN (or 8 s). */
async function exchange(port: number, payload: Buffer, readAfterMs: number) {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => undefined);
  s.pause();
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.end(payload);
  await sleep(readAfterMs);
  let buf = Buffer.alloc(0);
  let n = 0;
  const how = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), 8000);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        n++;
      }
    });
    s.on('end', () => (clearTimeout(timer), resolve('fin')));
    s.on('close', () => (clearTimeout(timer), resolve('close')));
    s.resume();
  });
  s.destroy();
  return { n, how };
}

t.test('100 large answers, FIN right after the queries, client reads late: all answered, then FIN', async (t) => {
  const { dns, reports } = await server(t);
  const q = Buffer.concat(Array.from({ length: 100 }, () => framed(buildQuery('many.test').bytes)));
  t.same(await exchange(dns.tcp.port, q, 1500), { n: 100, how: 'fin' });
  t.same(reports, []);
});

t.test('slow answers past 32 pending, interleaved with unanswered messages and a FIN', async (t) => {
  const { dns, reports } = await server(t);
  const resp = buildQuery('many.test').bytes;
  resp[2]! |= 0x80; // QR: a response, never answered
  const parts: Buffer[] = [];
  for (let i = 0; i < 70; i++) {
    parts.push(framed(buildQuery(`slow${i}.slow.test`).bytes));
    if (i % 7 === 0) parts.push(framed(Buffer.alloc(0)), framed(resp));
  }
  t.same(await exchange(dns.tcp.port, Buffer.concat(parts), 0), { n: 70, how: 'fin' });
  t.same(reports, []);
});

t.test('a complete message then an over-long length in the same read: the complete one is answered first?', async (t) => {
  const { dns, reports } = await server(t);
  const big = Buffer.from([0x20, 0x00]); // 8192: longer than any query
  const r = await exchange(dns.tcp.port, Buffer.concat([framed(buildQuery('many.test').bytes), big, Buffer.alloc(100)]), 0);
  t.ok(r.how !== 'timeout', `closed (${JSON.stringify(r)})`);
  t.same(reports, []);
});
