// ATTACK6 (against the proxy's request-head parsing, as a hostile client).
// Finding 2 (low, audit): a head refused by Node's parser (400 HPE_*, 431) or by the headers timeout (408)
// was answered with no audit line; now each one writes one (reason bad-request, the parser's code), inside
// a plain-HTTP tunnel naming the tunnel's host. (Finding 1, in the CONNECT fast path: test/attack6-fastpath.test.ts.)
// Held: a slowloris is cut at the headers deadline and audited; a head trickled byte by byte is read exactly.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { startInproc, type Inproc } from './harness/inproc.js';

let g: Inproc;
const MAX = 16 * 1024;
const world = (headersTimeoutMs: number, maxHeaderBytes: number) =>
  startInproc({
    zone: { 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => ['allowed.test', `allowed.test:${p}`],
    limits: { headersTimeoutMs, maxHeaderBytes },
  });
t.before(async () => {
  g = await world(1_500, MAX);
});
t.teardown(async () => {
  await g?.close();
});

/** Send `parts` (each after a macrotask), read until close or `waitMs`; the reply and the audit lines meanwhile. */
async function exchange(parts: Buffer[], waitMs = 3_000, gw = g, gapMs = 0): Promise<{ reply: string; audit: AuditEvent[] }> {
  const g = gw;
  const before = g.audit.events.length;
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(g.proxy.address.port, '127.0.0.1');
    s.setNoDelay(true);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) break;
        s.write(p);
        if (parts.length > 1) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    setTimeout(() => s.destroy(), waitMs).unref();
  });
  await new Promise((r) => setTimeout(r, 50));
  return { reply, audit: g.audit.events.slice(before) };
}

t.test('finding 2: every parser refusal writes its audit line', async (t) => {
  const p = g.origin.port;
  const table: Array<[string, string, number, RegExp]> = [
    ['non-ASCII in the target', `CONNECT allowed\xe9.test:${p} HTTP/1.1\r\n\r\n`, 400, /^HPE_/],
    ['lowercase method', `connect allowed.test:${p} HTTP/1.1\r\n\r\n`, 400, /^HPE_INVALID_METHOD$/],
    ['NUL in a header', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\0b\r\n\r\n`, 400, /^HPE_/],
    ['bare LF', `CONNECT allowed.test:${p} HTTP/1.1\n\n`, 400, /^HPE_/],
    ['over the header limit', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: ${'a'.repeat(MAX + 10)}\r\n\r\n`, 431, /^HPE_HEADER_OVERFLOW$/],
    ['an unfinished head (headers timeout)', `CONNECT allowed.test:${p} HTTP/1.1\r\nX: a\r\n`, 408, /^ERR_HTTP_REQUEST_TIMEOUT$/],
  ];
  for (const [what, bytes, status, code] of table) {
    const x = await exchange([Buffer.from(bytes, 'latin1')]);
    t.match(x.reply, new RegExp(`^HTTP/1\\.1 ${status} `), `${what}: answered ${status}`);
    const lines = x.audit.filter((e) => e.event === 'http' || e.event === 'connect');
    t.equal(lines.length, 1, `${what}: one audit line`);
    t.match(lines[0], { decision: 'deny', reason: 'bad-request', status, client: '127.0.0.1', detail: code }, what);
  }
  // inside a plain-HTTP tunnel: the line names the tunnel's host
  const x = await exchange([
    Buffer.from(`CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: allowed.test:${p}\r\nX: a\0b\r\n\r\n`, 'latin1'),
  ]);
  t.match(x.reply, /\r\n\r\nHTTP\/1\.1 400 /, 'a bad request inside a tunnel: 400');
  t.match(
    x.audit.filter((e) => e.event === 'http'),
    [{ decision: 'deny', reason: 'bad-request', status: 400, host: 'allowed.test', port: p, ip: '127.0.0.1' }],
    'audited as the tunnel host',
  );
});

t.test('held: a slowloris (one byte per read) is cut at the headers deadline and audited', async (t) => {
  const bytes = Buffer.from(`CONNECT allowed.test:${g.origin.port} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`, 'latin1');
  const t0 = Date.now();
  const x = await exchange(
    [...bytes].map((b) => Buffer.from([b])),
    4_000,
    g,
    250,
  );
  const ms = Date.now() - t0;
  t.match(x.reply, /^HTTP\/1\.1 408 /, 'answered 408');
  t.ok(ms < 1_500 + 700, `within the headers timeout (${ms} ms)`);
  t.match(
    x.audit.filter((e) => e.event === 'http' || e.event === 'connect'),
    [{ decision: 'deny', reason: 'bad-request', status: 408 }],
    'one audit line, nothing admitted',
  );
});

t.test('held: a request or CONNECT trickled byte by byte is read exactly', async (t) => {
  const p = g.origin.port;
  const req = `GET http://allowed.test:${p}/trickled HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`;
  const x = await exchange(
    [...Buffer.from(req, 'latin1')].map((b) => Buffer.from([b])),
    3_000,
    g,
    2,
  );
  t.match(x.reply, new RegExp(`^HTTP/1\\.1 200 OK[^]*hello allowed.test:${p} /trickled`));
  const c = `CONNECT allowed.test:${p} HTTP/1.1\r\n\r\nGET /in HTTP/1.1\r\nHost: allowed.test:${p}\r\nConnection: close\r\n\r\n`;
  const y = await exchange(
    [...Buffer.from(c, 'latin1')].map((b) => Buffer.from([b])),
    3_000,
    g,
    2,
  );
  t.match(y.reply, new RegExp(`^HTTP/1\\.1 200 Connection Established[^]*hello allowed.test:${p} /in`), 'a CONNECT trickled: tunnel');
});
