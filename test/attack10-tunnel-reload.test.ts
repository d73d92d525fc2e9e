// ATTACK10 (F1, F2, F3, F5): what a reload does to tunnels, and whether each tunnel's audit lines say
// what happened.
// - F3: a reload that narrows what a rule lets a tunnel carry (`host:port/tcp` → `host:port`, or a port
//   rule → the host alone) left open tunnels relaying what the new rule forbids, and a tunnel admitted
//   before the reload but sending its first bytes after it was checked against the old rule. Now such
//   tunnels are revoked like those whose host is no longer allowed (registry.ts `allows`).
// - F1: after one side's FIN, a tunnel the gateway then closed (reload, idle timeout) was logged
//   `closed_by: client|upstream`. Now the gateway's reason is logged; a FIN names who ended a tunnel
//   only when the gateway did not close it.
// - F2: a refused CONNECT (502, lingering) stayed in the registry, and a reload refused it again (a
//   second deny line). Now a refusal leaves the registry at once.
// - F5: a CONNECT admitted and dialled for a client that left before the answer left no audit line.
// - Re-attack: what a tunnel may carry came from the first matching rule, so reordering the same rules
//   revoked tunnels; now the widest rule for the port decides (policy/allowlist.ts).
import net from 'node:net';
import t from 'tap';
import type { AuditEvent } from '../proxy/audit.js';
import { connectTunnel, startInproc, type Inproc } from './harness/inproc.js';

const F = (e: AuditEvent) => e as unknown as Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP origin recording what each connection received; `speak` writes on accept. */
async function origin(speak?: (s: net.Socket) => void) {
  const conns: Array<{ bytes: string; socket: net.Socket }> = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const c = { bytes: '', socket: s };
    conns.push(c);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (c.bytes += d.toString('latin1')));
    speak?.(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: () => {
      for (const c of conns) c.socket.destroy();
      server.close();
    },
  };
}

const tunnel = connectTunnel;

let g: Inproc;
t.before(async () => {
  g = await startInproc({ zone: { 'x.test': { a: ['127.0.0.1'] }, 'y.test': { a: ['127.0.0.1'] } }, rules: [] });
});
t.teardown(() => g.close());

const lines = (host: string, from = 0, port?: number) =>
  g.audit.events
    .slice(from)
    .map(F)
    .filter((e) => e.host === host && (port === undefined || e.port === port));

t.test('F3: a reload that narrows what a tunnel may carry closes the tunnels the old rule opened', async (t) => {
  const o = await origin();
  t.teardown(o.close);
  g.setRules([`x.test:${o.port}/tcp`]);
  const from = g.audit.events.length;
  // Open and relaying opaque bytes before the reload; admitted (200) but no first bytes yet.
  const a = await tunnel(g.proxy.address.port, 'x.test', o.port);
  t.match(a.head, /^HTTP\/1\.1 200/);
  a.s.write('\x00\x01\x02 opaque-before');
  await sleep(100);
  const b = await tunnel(g.proxy.address.port, 'x.test', o.port);
  t.match(b.head, /^HTTP\/1\.1 200/);
  g.setRules([`x.test:${o.port}`]); // TLS, HTTP or SSH only from now on
  a.s.write('\x00\x01\x02 opaque-after');
  b.s.write('\x00\x01\x02 opaque-first-bytes-after');
  await Promise.all([a.closed, b.closed]);
  await sleep(100);
  t.same(
    o.conns.map((c) => c.bytes),
    ['\x00\x01\x02 opaque-before', ''],
    'nothing the new rule forbids reached the origin',
  );
  const closes = lines('x.test', from, o.port).filter((e) => e.event === 'tunnel_close');
  t.same(
    closes.map((e) => e.closed_by),
    ['policy-reload', 'policy-reload'],
    'both tunnels closed by the reload',
  );
  // Widening, or the same rule again, keeps a tunnel.
  g.setRules([`x.test:${o.port}/tcp`]);
  const c = await tunnel(g.proxy.address.port, 'x.test', o.port);
  c.s.write('\x00 kept');
  await sleep(100);
  g.setRules([`x.test:${o.port}/tcp`, 'y.test']);
  c.s.write(' still');
  await sleep(150);
  t.equal(c.s.destroyed, false, 'an unchanged rule keeps the tunnel');
  t.equal(o.conns[2]?.bytes, '\x00 kept still');
  // A port rule narrowed to the host alone (TLS on 443 only): an SSH tunnel on the port is closed.
  const ssh = await origin((s) => s.write('SSH-2.0-OpenSSH_9.6\r\n'));
  t.teardown(ssh.close);
  g.setRules([`x.test:${ssh.port}`]);
  const d = await tunnel(g.proxy.address.port, 'x.test', ssh.port);
  d.s.write('SSH-2.0-client\r\n');
  await sleep(100);
  g.setRules(['x.test']);
  await d.closed;
  c.s.destroy();
});

t.test('F1: a tunnel the gateway closes after one side half-closed is logged with the gateway reason', async (t) => {
  // The origin sends and keeps its side open; the client sends and half-closes.
  const o = await origin((s) => s.write('\x00 banner'));
  t.teardown(o.close);
  g.setRules([`x.test:${o.port}/tcp`]);
  const from = g.audit.events.length;
  const a = await tunnel(g.proxy.address.port, 'x.test', o.port);
  a.s.write('\x00 data');
  a.s.end(); // client FIN: the tunnel stays open for the origin's bytes
  await sleep(150);
  t.equal(a.s.destroyed, false, 'half-open: still relaying');
  g.setRules(['y.test']);
  await a.closed;
  await sleep(50);
  t.same(
    lines('x.test', from, o.port)
      .filter((e) => e.event === 'tunnel_close')
      .map((e) => e.closed_by),
    ['policy-reload'],
  );
  // The origin half-closes first, then the reload.
  const o2 = await origin((s) => s.end('\x00 bye'));
  t.teardown(o2.close);
  g.setRules([`x.test:${o2.port}/tcp`]);
  const from2 = g.audit.events.length;
  const b = await tunnel(g.proxy.address.port, 'x.test', o2.port);
  b.s.write('\x00 data');
  await sleep(150);
  g.setRules(['y.test']);
  await b.closed;
  await sleep(50);
  t.same(
    lines('x.test', from2, o2.port)
      .filter((e) => e.event === 'tunnel_close')
      .map((e) => e.closed_by),
    ['policy-reload'],
  );
  // Nobody but the two sides: the first FIN names who ended it.
  const o3 = await origin();
  t.teardown(o3.close);
  g.setRules([`x.test:${o3.port}/tcp`]);
  const from3 = g.audit.events.length;
  const c = await tunnel(g.proxy.address.port, 'x.test', o3.port);
  c.s.write('\x00 data');
  await sleep(100);
  o3.conns[0]!.socket.end();
  await sleep(50);
  c.s.end();
  await c.closed;
  await sleep(50);
  t.same(
    lines('x.test', from3, o3.port)
      .filter((e) => e.event === 'tunnel_close')
      .map((e) => e.closed_by),
    ['upstream'],
  );
});

t.test('F2: a refused CONNECT is refused once, whatever reload comes while its answer lingers', async (t) => {
  // A port nothing listens on: the dial fails (502) and the refusal lingers for the client to read.
  const closed = await origin();
  const port = closed.port;
  closed.close();
  await sleep(50);
  g.setRules([`x.test:${port}`]);
  const from = g.audit.events.length;
  const a = await tunnel(g.proxy.address.port, 'x.test', port);
  t.match(a.head, /^HTTP\/1\.1 502/);
  t.equal(g.proxy.connections().length, 0, 'not in the registry any more');
  g.setRules(['y.test']);
  await sleep(100);
  t.same(
    lines('x.test', from, port).map((e) => `${e.event} ${e.decision} ${e.reason}`),
    ['connect error upstream-connect-failed'],
    'one line: the refusal',
  );
  a.s.destroy();
});

t.test('F5: every dial has its audit line, even when the client left before the answer', async (t) => {
  const o = await origin();
  t.teardown(o.close);
  g.setRules([`x.test:${o.port}`]);
  const from = g.audit.events.length;
  const N = 40;
  for (let i = 0; i < N; i++) {
    const s = net.connect({ port: g.proxy.address.port, host: '127.0.0.1' });
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.write(`CONNECT x.test:${o.port} HTTP/1.1\r\n\r\n`);
    await sleep(i % 4); // then a reset, while the gateway is admitting, dialling or answering
    s.resetAndDestroy();
    await sleep(10);
  }
  await sleep(800);
  const opened = lines('x.test', from, o.port).filter((e) => e.event === 'connect');
  t.ok(opened.length >= o.conns.length, `${opened.length} connect lines for ${o.conns.length} connections the origin accepted`);
  t.equal(opened.length, N, 'one line per admitted CONNECT');
  const early = opened.filter((e) => e.detail === 'the client closed before the tunnel was answered');
  t.ok(
    early.every((e) => e.decision === 'allow' && e.status === undefined),
    'left before the answer: allowed, never answered',
  );
});

t.test('rule order does not decide what a tunnel may carry: the widest rule for the port does', async (t) => {
  const o = await origin();
  t.teardown(o.close);
  for (const rules of [
    [`x.test:${o.port}`, `x.test:${o.port}/tcp`],
    [`x.test:${o.port}/tcp`, `x.test:${o.port}`],
    ['x.test', `x.test:${o.port}/tcp`],
  ]) {
    g.setRules(rules);
    t.match(g.allowlist().decide('x.test', 'connect', o.port), { allow: true, carries: 'any' }, rules.join(' '));
  }
  // The same rules reordered by a reload keep an opaque tunnel open.
  g.setRules([`x.test:${o.port}`, `x.test:${o.port}/tcp`]);
  const a = await tunnel(g.proxy.address.port, 'x.test', o.port);
  a.s.write('\x00 opaque');
  await sleep(100);
  g.setRules([`x.test:${o.port}/tcp`, `x.test:${o.port}`]);
  a.s.write(' still');
  await sleep(150);
  t.equal(o.conns[0]?.bytes, '\x00 opaque still', 'relayed across the reload');
  t.equal(a.s.destroyed, false);
  a.s.destroy();
});
