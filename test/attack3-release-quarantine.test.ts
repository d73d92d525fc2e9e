// ATTACK3 finding: a reload that removes a name quarantines its pool address from the moment of the
// reload, not from the end of the last answer that handed it out. A client keeps that answer for its
// TTL (up to an hour), so after the 10-minute quarantine the address can go to another allowed name
// while the client still resolves the removed name to it: its connection "to the removed name" is that
// other name's tunnel (SSH and /tcp carry no name to catch it). Natural expiry already quarantines from
// the answer's end (TTL + grace); a release must not be shorter.
// Real DNS server (UDP) and real transparent listeners on loopback pool addresses, a fake clock.
import t from 'tap';
import net from 'node:net';
import { startDnsServer } from '../proxy/dns/server.js';
import { Resolver } from '../proxy/dns/resolver.js';
import { startTransparent } from '../proxy/transparent/listener.js';
import { Pool, POOL_DEFAULTS } from '../proxy/transparent/pool.js';
import { mergeSources, type Allowlist } from '../proxy/policy/allowlist.js';
import { FakeUpstream, MemoryAudit, dnsQuery } from './harness/inproc.js';
import { RCODE } from '../proxy/dns/wire.js';

const allowlistOf = (rules: string[]): Allowlist => {
  const r = mergeSources({ defaults: false, flags: rules });
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.allowlist;
};
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
const dial = (ip: string, port: number) =>
  new Promise<string>((resolve) => {
    const s = net.connect({ host: ip, port });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data || 'closed'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    setTimeout(() => s.destroy(), 2000);
  });

t.test("ATTACK3: a released address is not given to another name while the removed name's answer may still be cached", async (t) => {
  let now = 1_000_000;
  // One pool address: whatever the next name gets is the released one.
  const pool = new Pool(['127.0.0.211'], { now: () => now });
  let allowlist = allowlistOf(['ssh-a.test:22', 'ssh-b.test:22']);
  const audit = new MemoryAudit();
  const upstream = new FakeUpstream({ 'ssh-a.test': { a: ['203.0.113.1'], ttl: 3600 }, 'ssh-b.test': { a: ['203.0.113.2'], ttl: 3600 } });
  const resolver = new Resolver(upstream, { allowed: (n) => allowlist.decide(n, 'dns').allow });
  const dns = await startDnsServer('127.0.0.1', 0, {
    allowlist: () => allowlist,
    resolver,
    audit,
    report: (m) => t.fail(m),
    transparent: (n, ttl) => pool.assign(n, ttl),
  });
  t.teardown(() => dns.close());
  const port = await freePort();
  const reached: string[] = [];
  const l = await startTransparent(
    pool,
    [port],
    { transparent: (s, host) => (reached.push(host), s.end(`tunnel to ${host}\n`)) },
    audit,
    (m) => t.fail(m),
  );
  t.teardown(() => l.close());

  const a = await dnsQuery(dns.udp.port, 'ssh-a.test');
  t.equal(a.rcode, RCODE.NOERROR);
  t.same(a.answers, ['127.0.0.211']);
  const cachedTtl = a.message.answers[0]!.ttl ?? 0;
  t.equal(cachedTtl, 3600, 'the client may keep ssh-a.test -> 127.0.0.211 for an hour');

  // A reload one second later removes ssh-a.test (what the gateway's reload does to the pool).
  now += 1000;
  allowlist = allowlistOf(['ssh-b.test:22']);
  t.same(
    pool.release((n) => !allowlist.decide(n, 'dns').allow).map((r) => r.name),
    ['ssh-a.test'],
  );
  t.equal(await dial('127.0.0.211', port), 'closed', 'right after the reload the address stands for nothing');

  // Past the quarantine, well inside the TTL the client was given.
  now += POOL_DEFAULTS.quarantineMs + 60_000;
  t.ok(now < 1_000_000 + cachedTtl * 1000, 'the client still holds its answer for ssh-a.test');
  const b = await dnsQuery(dns.udp.port, 'ssh-b.test');
  t.notSame(b.answers, ['127.0.0.211'], 'ssh-b.test must not get the address a client still resolves ssh-a.test to');
  // The client, connecting to "ssh-a.test" by its cached answer:
  const out = await dial('127.0.0.211', port);
  t.equal(out, 'closed', "a connection by the stale answer is refused, never another name's tunnel");
  t.notOk(reached.includes('ssh-b.test'), `reached: ${JSON.stringify(reached)}`);
});
