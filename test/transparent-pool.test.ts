// Transparent mode's pure parts: the pool (one name per address, expiry, quarantine, release, bound),
// the pool's range, the firewall's INPUT rules for it, and the DNS answer built from it. No root, no I/O.
import t from 'tap';
import { Pool, poolAddresses, poolFor, defaultPool, MAX_POOL_SIZE } from '../proxy/transparent/pool.js';
import { transparentInput, v4Rules } from '../firewall/rules.js';
import { viaFor } from '../proxy/transparent/listener.js';
import { answerQuery } from '../proxy/dns/server.js';
import { Resolver } from '../proxy/dns/resolver.js';
import type { UpstreamClient } from '../proxy/dns/upstream.js';
import { Allowlist } from '../proxy/policy/allowlist.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import type { AuditEvent } from '../proxy/audit.js';
import { CLASS_IN, RCODE, TYPE, type Message } from '../proxy/dns/wire.js';

const clock = () => {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
};
const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];

t.test('one address per name, one name per address; the same address while it lives', async (t) => {
  const c = clock();
  const p = new Pool(IPS, { now: c.now, graceMs: 1000, quarantineMs: 5000 });
  const a = p.assign('a.test', 10);
  const b = p.assign('b.test', 10);
  t.ok(a.ok && b.ok);
  if (!a.ok || !b.ok) return;
  t.not(a.ip, b.ip, 'two names never share an address');
  t.same(p.assign('a.test', 10), a, 'asked again: the same address');
  t.equal(p.nameOf(a.ip), 'a.test');
  t.equal(p.nameOf(b.ip), 'b.test');
  t.equal(p.nameOf('10.0.0.3'), undefined, 'an address never given out stands for nothing');
  t.equal(p.nameOf('192.0.2.1'), undefined, 'an address outside the pool stands for nothing');
  t.equal(p.addressOf('a.test'), a.ip);
});

t.test('an entry lives the TTL plus the grace; expired, it stands for nothing; reused only after the quarantine', async (t) => {
  const c = clock();
  const p = new Pool(['10.0.0.1'], { now: c.now, graceMs: 1000, quarantineMs: 5000 });
  const a = p.assign('a.test', 10);
  t.ok(a.ok);
  c.advance(10_999);
  t.equal(p.nameOf('10.0.0.1'), 'a.test', 'within TTL + grace');
  t.same(p.assign('a.test', 10), a, 'a new answer extends it');
  c.advance(11_000);
  t.equal(p.nameOf('10.0.0.1'), undefined, 'expired: a connection to it is refused');
  t.match(p.assign('b.test', 10), { ok: false, size: 1 }, 'not given to another name during the quarantine');
  c.advance(5_000);
  const b = p.assign('b.test', 10);
  t.match(b, { ok: true, ip: '10.0.0.1' }, 'after the quarantine, another name may have it');
  t.equal(p.nameOf('10.0.0.1'), 'b.test');
  t.equal(p.addressOf('a.test'), undefined);
});

t.test('an expired name asks again: it gets a (possibly new) address, never one another name holds', async (t) => {
  const c = clock();
  const p = new Pool(IPS, { now: c.now, graceMs: 0, quarantineMs: 60_000 });
  const a = p.assign('a.test', 1);
  const b = p.assign('b.test', 100);
  c.advance(2000);
  const a2 = p.assign('a.test', 1);
  t.ok(a.ok && b.ok && a2.ok);
  if (!a.ok || !b.ok || !a2.ok) return;
  t.not(a2.ip, b.ip);
  t.not(a2.ip, a.ip, 'the expired address is quarantined, even for its old name');
});

t.test('release (a reload): the addresses of removed names stand for nothing at once, and are quarantined', async (t) => {
  const c = clock();
  const p = new Pool(['10.0.0.1', '10.0.0.2'], { now: c.now, graceMs: 1000, quarantineMs: 5000 });
  const a = p.assign('a.test', 100);
  p.assign('b.test', 100);
  t.same(
    p.release((n) => n === 'a.test'),
    [{ ip: a.ok ? a.ip : '', name: 'a.test' }],
  );
  t.equal(p.nameOf(a.ok ? a.ip : ''), undefined);
  t.equal(p.nameOf('10.0.0.2'), 'b.test', 'other names keep theirs');
  t.match(p.assign('c.test', 10), { ok: false }, 'the released address is quarantined');
  t.same(
    p.release(() => false),
    [],
  );
});

t.test('exhaustion: a full pool refuses (the caller answers SERVFAIL); the entries stay bounded', async (t) => {
  const p = new Pool(IPS);
  for (let i = 0; i < 3; i++) t.ok(p.assign(`n${i}.test`, 60).ok);
  let refused = 0;
  for (let i = 3; i < 1000; i++) if (!p.assign(`n${i}.test`, 60).ok) refused++;
  t.equal(refused, 997, 'every further name refused');
  t.equal(p.entries().length, 3);
  t.equal(p.nameOf(IPS[0]!), 'n0.test', "a flood of names takes nobody's address");
});

t.test('the pool range: CIDR parsing, bounds, and the default (upper half of the listen /24)', async (t) => {
  t.match(poolAddresses('10.1.2.128/25'), { ok: true, cidr: '10.1.2.128/25' });
  const r = poolAddresses('10.1.2.128/25');
  if (r.ok)
    t.same([r.addresses.length, r.addresses[0], r.addresses.at(-1)], [126, '10.1.2.129', '10.1.2.254'], 'network and broadcast left out');
  t.match(poolAddresses('10.1.2.8/31'), { ok: true, addresses: ['10.1.2.8', '10.1.2.9'] });
  t.match(poolAddresses('10.1.2.8/32'), { ok: true, addresses: ['10.1.2.8'] });
  for (const bad of ['10.1.2.129/25', '10.1.2.0', '10.1.2.0/33', 'fd00::/120', '10.1.2.0/21', 'x/24', ' /24', '10.1.2.0/-1'])
    t.match(poolAddresses(bad), { ok: false, error: /transparent pool/ }, `refused: ${bad}`);
  t.match(poolAddresses('10.1.0.0/22'), { ok: true }, `${MAX_POOL_SIZE - 2} addresses: accepted`);
  t.equal(defaultPool('10.213.7.2'), '10.213.7.128/25');
  t.equal(defaultPool('0.0.0.0'), undefined);
  t.equal(poolFor({ transparent: false, listen: '10.0.0.2' }), undefined);
  t.match(poolFor({ transparent: true, listen: '0.0.0.0' }), { ok: false, error: /--transparent-pool/ });
  t.match(poolFor({ transparent: true, listen: '10.0.0.200' }), { ok: false, error: /holds the listen address/ });
  t.match(poolFor({ transparent: true, listen: '10.0.0.2' }), { ok: true, cidr: '10.0.0.128/25' });
});

t.test('firewall: INPUT accepts the pool on the allowed ports only, rejects UDP to it, before the final drop', async (t) => {
  const plan = {
    sandboxInterface: 'eth0',
    listen: '10.0.0.2',
    dnsPort: 53,
    proxyPort: 3128,
    upstreams: [{ host: '192.0.2.53', port: 53 }],
    setSize: 10,
    minTtl: 60,
  };
  const without = v4Rules(plan).INPUT;
  t.notMatch(without.join('\n'), '10.0.0.128', 'off: no pool rules');
  const rules = v4Rules({ ...plan, transparentPool: '10.0.0.128/25' }).INPUT;
  t.same(rules.slice(-3), [...transparentInput('10.0.0.128/25', 'eth0'), '-m comment --comment "codex-egress:in-drop" -j DROP']);
  t.same(transparentInput('10.0.0.128/25', 'eth0'), [
    '-d 10.0.0.128/25 -i eth0 -p tcp -m set --match-set codex-egress-ports dst -j ACCEPT',
    '-d 10.0.0.128/25 -i eth0 -p udp -m comment --comment "codex-egress:in-pool-udp" -j REJECT --reject-with icmp-port-unreachable',
  ]);
  t.same([viaFor(80), viaFor(443), viaFor(22)], ['http', 'connect', 'connect']);
});

/** answerQuery with a fake upstream, an allowlist and an audit that collects. */
function dnsFixture(rules: string[], answer: Record<string, string[]>) {
  const r = parseRuleList(rules, 'flag', '--allow');
  if (!r.ok) throw new Error(r.errors.join());
  const allowlist = new Allowlist(r.rules);
  const upstream = {
    resolveA: async (name: string) =>
      answer[name] ? { rcode: RCODE.NOERROR, ips: answer[name]!, ttl: 30 } : { rcode: RCODE.NXDOMAIN, ips: [], ttl: 0 },
  } as unknown as UpstreamClient;
  const resolver = new Resolver(upstream);
  const lines: AuditEvent[] = [];
  const audit = { write: (e: AuditEvent) => void lines.push(e), close: async () => undefined };
  /** A standard query (QUERY, recursion desired) for one name, as parseQuery reads it off the wire. */
  const query = (name: string, type: number = TYPE.A): Message => ({
    header: { id: 1, qr: 0, opcode: 0, aa: 0, tc: 0, rd: 1, ra: 0, z: 0, ad: 0, cd: 0, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  return { allowlist, resolver, audit, lines, query };
}
const ipsOf = (p: Message | undefined) => (p?.answers ?? []).map((a) => a.address);

t.test('DNS: an allowed name is answered with its pool address; denied, refused and exhausted names never with one', async (t) => {
  const f = dnsFixture(['a.test', 'b.test', 'c.test', 'rebind.test', '!no.a.test', '*.w.test'], {
    'a.test': ['203.0.113.1'],
    'b.test': ['203.0.113.2'],
    'c.test': ['203.0.113.3'],
    'rebind.test': ['10.9.9.9'],
    'no.a.test': ['203.0.113.9'],
  });
  const pool = new Pool(['10.0.0.129', '10.0.0.130']);
  const opts = {
    allowlist: () => f.allowlist,
    resolver: f.resolver,
    audit: f.audit,
    transparent: (n: string, ttl: number) => pool.assign(n, ttl),
  };
  const a = await answerQuery(f.query('A.TEST.'), '10.0.0.3', opts);
  t.equal(a?.header.rcode, RCODE.NOERROR);
  t.same(ipsOf(a), ['10.0.0.129'], 'the pool address, not 203.0.113.1');
  t.match(f.lines.at(-1), { event: 'dns', decision: 'allow', answers: ['10.0.0.129'], resolved: ['203.0.113.1'] });
  t.equal(pool.nameOf('10.0.0.129'), 'a.test', 'the normalised name');
  const no = await answerQuery(f.query('no.a.test'), '10.0.0.3', opts);
  t.equal(no?.header.rcode, RCODE.NXDOMAIN, 'a deny rule: NXDOMAIN');
  const rb = await answerQuery(f.query('rebind.test'), '10.0.0.3', opts);
  t.equal(rb?.header.rcode, RCODE.REFUSED, 'a private upstream answer: refused, no pool address');
  t.same(ipsOf(rb), []);
  const nx = await answerQuery(f.query('x.w.test'), '10.0.0.3', opts);
  t.equal(nx?.header.rcode, RCODE.NXDOMAIN, 'NXDOMAIN upstream: NXDOMAIN, no pool address spent');
  t.same(ipsOf(await answerQuery(f.query('b.test'), '10.0.0.3', opts)), ['10.0.0.130']);
  const full = await answerQuery(f.query('c.test'), '10.0.0.3', opts);
  t.equal(full?.header.rcode, RCODE.SERVFAIL, 'exhausted: SERVFAIL');
  t.same(ipsOf(full), [], 'never the upstream address');
  t.match(f.lines.at(-1), { decision: 'deny', reason: 'pool-exhausted', rcode: 'SERVFAIL', answers: [], resolved: ['203.0.113.3'] });
  t.equal(pool.entries().length, 2, 'only the names answered hold addresses');
});
