// ATTACK8 (a review of this pass's changes): with Node's own Host requirement off (proxy/http/proxy.ts,
// requireHostHeader: false), a request without Host, with several, or in HTTP/1.0 must never reach an
// origin, on any path (absolute-form, WebSocket upgrade, inside a plain-HTTP tunnel, keep-alive after a
// good request), and each refusal writes exactly one deny line. Held.
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
let g: Inproc;
t.before(async () => {
  g = await startInproc({
    zone: { 'allowed.test': { a: ['127.0.0.1'] } },
    rules: (p) => ['allowed.test', `allowed.test:${p}`],
    limits: { headersTimeoutMs: 1_000, maxConnectionsPerClient: 50 },
  });
});
t.teardown(() => g?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function send(bytes: string, waitMs = 300): Promise<{ reply: string; denies: AuditEvent[]; reached: string[] }> {
  const before = g.audit.events.length;
  const reachedBefore = g.origin.requests.length;
  const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => undefined);
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  await new Promise((r) => s.once('connect', r));
  s.write(Buffer.from(bytes, 'latin1'));
  await sleep(waitMs);
  s.resetAndDestroy();
  await sleep(20);
  return {
    reply: Buffer.concat(chunks).toString('latin1'),
    denies: g.audit.events.slice(before).filter((e) => F(e).decision === 'deny'),
    reached: g.origin.requests.slice(reachedBefore).map((r) => `${r.method} ${r.url} ${r.host}`),
  };
}

t.test('absolute-form: no Host, several Hosts, HTTP/1.0, odd Host values never reach the origin', async (t) => {
  const p = g.origin.port;
  const u = `http://allowed.test:${p}/x`;
  const h = `allowed.test:${p}`;
  const cases: Array<[string, string, RegExp]> = [
    ['1.1 no Host', `GET ${u} HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['1.0 no Host', `GET ${u} HTTP/1.0\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['two equal Hosts', `GET ${u} HTTP/1.1\r\nHost: ${h}\r\nHost: ${h}\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['Host then evil Host', `GET ${u} HTTP/1.1\r\nHost: ${h}\r\nhost: evil.test\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['evil Host then Host', `GET ${u} HTTP/1.0\r\nHOST: evil.test\r\nHost: ${h}\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['empty Host', `GET ${u} HTTP/1.1\r\nHost:\r\n\r\n`, /^HTTP\/1\.1 403 /],
    ['Host list', `GET ${u} HTTP/1.1\r\nHost: ${h}, evil.test\r\n\r\n`, /^HTTP\/1\.1 403 /],
    ['Host_ spelling only', `GET ${u} HTTP/1.1\r\nHost_: ${h}\r\n\r\n`, /^HTTP\/1\.1 400 /],
    ['Expect 100-continue, no Host', `POST ${u} HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx`, /HTTP\/1\.1 400 /],
    ['Expect other, no Host', `GET ${u} HTTP/1.1\r\nExpect: nope\r\n\r\n`, /^HTTP\/1\.1 417 /],
    [
      'WebSocket upgrade, no Host',
      `GET ${u} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      /^HTTP\/1\.1 400 /,
    ],
    [
      'WebSocket upgrade, two Hosts',
      `GET ${u} HTTP/1.1\r\nHost: ${h}\r\nHost: evil.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      /^HTTP\/1\.1 400 /,
    ],
    ['keep-alive: good, then no Host', `GET ${u} HTTP/1.1\r\nHost: ${h}\r\n\r\nGET ${u}2 HTTP/1.1\r\n\r\n`, /200 OK[^]*HTTP\/1\.1 400 /],
  ];
  for (const [what, bytes, want] of cases) {
    const r = await send(bytes);
    t.match(r.reply, want, `${what}: ${JSON.stringify(r.reply.split('\r\n')[0])}`);
    t.equal(r.denies.length, 1, `${what}: one deny line ${JSON.stringify(r.denies.map((e) => F(e).detail))}`);
    t.same(
      r.reached,
      what.startsWith('keep-alive') ? [`GET /x ${g.origin.port && `allowed.test:${p}`}`] : [],
      `${what}: origin saw ${JSON.stringify(r.reached)}`,
    );
  }
});

t.test('inside a plain-HTTP tunnel: no Host, several Hosts, HTTP/1.0, absolute-form, upgrade', async (t) => {
  const p = g.origin.port;
  const h = `allowed.test:${p}`;
  const tun = `CONNECT ${h} HTTP/1.1\r\n\r\n`;
  const cases: Array<[string, string, RegExp, number]> = [
    ['1.1 no Host', `GET /a HTTP/1.1\r\n\r\n`, /HTTP\/1\.1 400 /, 0],
    ['1.0 no Host', `GET /a HTTP/1.0\r\n\r\n`, /HTTP\/1\.1 400 /, 0],
    ['two Hosts', `GET /a HTTP/1.1\r\nHost: ${h}\r\nHost: evil.test\r\n\r\n`, /HTTP\/1\.1 400 /, 0],
    ['Host of another name', `GET /a HTTP/1.1\r\nHost: evil.test\r\n\r\n`, /HTTP\/1\.1 403 /, 0],
    ['absolute-form to another host', `GET http://evil.test/a HTTP/1.1\r\nHost: ${h}\r\n\r\n`, /HTTP\/1\.1 400 /, 0],
    [
      'upgrade, no Host',
      `GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      /HTTP\/1\.1 400 /,
      0,
    ],
    ['good, then no Host', `GET /a HTTP/1.1\r\nHost: ${h}\r\n\r\nGET /b HTTP/1.1\r\n\r\n`, /200 OK[^]*HTTP\/1\.1 400 /, 1],
    ['good 1.0 with Host (control)', `GET /a HTTP/1.0\r\nHost: ${h}\r\n\r\n`, /200 OK/, 1],
  ];
  for (const [what, bytes, want, n] of cases) {
    const r = await send(tun + bytes);
    t.match(r.reply, /^HTTP\/1\.1 200 Connection Established\r\n\r\n/, `${what}: tunnel`);
    t.match(r.reply, want, `${what}: ${JSON.stringify(r.reply.slice(39, 80))}`);
    t.equal(
      r.denies.length,
      n === 1 && what.includes('control') ? 0 : 1,
      `${what}: deny lines ${JSON.stringify(r.denies.map((e) => F(e).detail))}`,
    );
    t.equal(r.reached.length, n, `${what}: origin saw ${JSON.stringify(r.reached)}`);
  }
  t.same(g.reports, [], 'no internal error');
});
