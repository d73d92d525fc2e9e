// Transparent mode's listeners and its wiring, in process (loopback pool addresses: 127/8 is local
// already, so no route is made): a connection to a pool address goes to the proxy as the name behind
// it; one to an address standing for no name is closed and audited; a reload follows the ports, and a
// port another socket holds is said, never fatal.
import t from 'tap';
import net from 'node:net';
import { startTransparent } from '../proxy/transparent/listener.js';
import { startTransparentMode } from '../proxy/transparent/mode.js';
import { Pool } from '../proxy/transparent/pool.js';
import { parseConfig, defaultConfig } from '../proxy/config.js';
import { Allowlist } from '../proxy/policy/allowlist.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import type { AuditEvent } from '../proxy/audit.js';

const allowlist = (rules: string[]) => {
  const r = parseRuleList(rules, 'flag', '--allow');
  if (!r.ok) throw new Error(r.errors.join());
  return new Allowlist(r.rules);
};
const collect = () => {
  const lines: AuditEvent[] = [];
  return { lines, audit: { write: (e: AuditEvent) => void lines.push(e), close: async () => undefined } };
};
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
/** Connect to ip:port and report how it ended: 'closed' (at once, nothing received) or what came back. */
const dial = (ip: string, port: number) =>
  new Promise<string>((resolve) => {
    const s = net.connect({ host: ip, port });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data || 'closed'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    setTimeout(() => s.destroy(), 2000);
  });

t.test('a connection goes to the proxy as the name behind its pool address; an unmapped one is closed and audited', async (t) => {
  const pool = new Pool(['127.0.0.201', '127.0.0.202']);
  const port = await freePort();
  const { lines, audit } = collect();
  const seen: Array<[string, number, string]> = [];
  const l = await startTransparent(
    pool,
    [port],
    { transparent: (s, host, p, via) => (seen.push([host, p, via]), s.end('tunnel\n')) },
    audit,
    (m) => t.fail(m),
  );
  t.teardown(() => l.close());
  const a = pool.assign('a.test', 60);
  t.ok(a.ok);
  t.equal(await dial(a.ok ? a.ip : '', port), 'tunnel\n');
  t.same(seen, [['a.test', port, 'connect']]);
  const other = a.ok && a.ip === '127.0.0.201' ? '127.0.0.202' : '127.0.0.201';
  t.equal(await dial(other, port), 'closed', 'an address standing for no name');
  t.equal(seen.length, 1, 'never handed to the proxy');
  t.match(lines.at(-1), {
    event: 'connect',
    host: other,
    port,
    decision: 'deny',
    reason: 'not-allowlisted',
    mode: 'transparent',
    detail: /stands for no name/,
  });
  t.same(l.ports(), [port]);
});

t.test('reload: ports follow the allowlist; a port held by another socket is reported, the rest still served', async (t) => {
  // p2 (held by another socket) sorts before p3, so a failure on it must not stop p3 from opening.
  const [p1, x, y] = [await freePort(), await freePort(), await freePort()];
  const [p2, p3] = [Math.min(x, y), Math.max(x, y)];
  const blocker = net.createServer().listen(p2, '0.0.0.0');
  await new Promise((r) => blocker.once('listening', r));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const cfg = parseConfig({
    ...defaultConfig(),
    upstreams: ['192.0.2.53'],
    listen: '127.0.0.1',
    transparent: true,
    transparentPool: '127.0.0.200/30',
  });
  const { audit } = collect();
  const reports: string[] = [];
  const mode = await startTransparentMode(
    cfg,
    allowlist([`a.test:${p1}`]),
    { transparent: (s) => s.end('ok\n') },
    audit,
    (m) => void reports.push(m),
  );
  t.teardown(() => mode.close());
  t.match(mode.status(), { pool: '127.0.0.200/30', size: 2, used: 0, ports: [p1] });
  const a = mode.assign('a.test', 60);
  t.ok(a.ok);
  const released = await mode.reload(allowlist([`b.test:${p2}`, `b.test:${p3}`]));
  t.same(released, [`${a.ok ? a.ip : ''}=a.test`], 'a.test removed: its address released');
  t.same(mode.status().ports, [p3], `${p1} closed, ${p3} opened, ${p2} held by another socket`);
  t.match(reports.join('\n'), new RegExp(`cannot listen on the pool on port ${p2}`), 'reported (the gateway sends it to standard error)');
  t.equal(await dial(a.ok ? a.ip : '', p1), 'ECONNREFUSED', 'the removed port has no listener');
  await t.rejects(
    startTransparentMode(cfg, allowlist([`b.test:${p2}`]), { transparent: (s) => s.end() }, audit, (m) => void reports.push(m)),
    /cannot listen on the pool on port/,
    'at start the same conflict refuses to start',
  );
});
