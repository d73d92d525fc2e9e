// The DNS resolver through real sockets: real dig against the real gateway, a fake upstream of the
// test's own that records every query, all inside a namespace of the test's own.
import t from 'tap';
import { join } from 'node:path';
import { ROOT } from './harness/world.js';
import { startCore, dig, nodeIn, UPSTREAM, DEAD_UPSTREAM, WEB, type Core } from './harness/core.js';

let core: Core;
t.before(async () => {
  core = await startCore();
});
t.teardown(() => core?.close());

const upstreamSaw = (name: string) => core.world.queries().filter((q) => q.name === name);

t.test('an allowed name is answered with its address, and the answer is audited', async (t) => {
  const r = await dig(core.ns, 'allowed.test');
  t.equal(r.status, 'NOERROR');
  t.same(r.answers, [WEB]);
  const e = await core.gateway.waitForAudit((e) => e.event === 'dns' && e.name === 'allowed.test' && e.qtype === 'A');
  t.match(e, {
    v: 1,
    decision: 'allow',
    reason: 'allowed',
    rcode: 'NOERROR',
    answers: [WEB],
    rule: { text: 'allowed.test', source: 'flag' },
  });
});

t.test('other spellings of an allowed name resolve the same', async (t) => {
  for (const spelling of ['ALLOWED.test', 'allowed.test.', 'aLLoWeD.TeSt.']) {
    t.same((await dig(core.ns, spelling)).answers, [WEB], spelling);
  }
});

t.test('a denied name gets NXDOMAIN and is never forwarded upstream', async (t) => {
  for (const [name, type] of [
    ['denied.test', 'A'],
    ['denied.test', 'TXT'],
    ['exfil-c2VjcmV0.denied.test', 'A'],
    ['allowed.test.denied.test', 'A'],
    ['evilallowed.test', 'A'],
    ['10.113.0.203.in-addr.arpa', 'PTR'],
    ['wild.test', 'A'],
  ] as const) {
    const r = await dig(core.ns, name, { type });
    t.equal(r.status, 'NXDOMAIN', `${name} ${type}`);
    t.equal(r.answerCount, 0);
  }
  const e = await core.gateway.waitForAudit((e) => e.event === 'dns' && e.name === 'denied.test');
  t.match(e, { decision: 'deny', reason: 'not-allowlisted', rcode: 'NXDOMAIN' });
  const names = core.world.queries().map((q) => q.name);
  for (const leaked of [
    'denied.test',
    'exfil-c2vjcmv0.denied.test',
    'allowed.test.denied.test',
    'evilallowed.test',
    '10.113.0.203.in-addr.arpa',
    'wild.test',
  ]) {
    t.notOk(names.includes(leaked), `upstream never saw ${leaked}`);
  }
});

t.test('a subdomain rule answers below the apex only', async (t) => {
  t.same((await dig(core.ns, 'a.wild.test')).answers, [WEB]);
  t.equal((await dig(core.ns, 'wild.test')).status, 'NXDOMAIN');
});

t.test('AAAA and HTTPS answers for allowed names are empty, so clients use IPv4; only A goes upstream', async (t) => {
  for (const type of ['AAAA', 'HTTPS', 'TXT', 'MX']) {
    const r = await dig(core.ns, 'allowed.test', { type });
    t.equal(r.status, 'NOERROR', type);
    t.equal(r.answerCount, 0, `${type}: no records`);
  }
  t.notOk(
    core.world.queries().some((q) => q.type !== 1),
    'the upstream only ever sees A queries',
  );
});

t.test('a rebinding answer (private, loopback, link-local or mixed) is refused whole', async (t) => {
  for (const name of ['lan.test', 'meta.test', 'mixed.test']) {
    const r = await dig(core.ns, name);
    t.equal(r.status, 'REFUSED', name);
    t.equal(r.answerCount, 0, `${name}: no address leaks`);
    const e = await core.gateway.waitForAudit((e) => e.event === 'dns' && e.name === name);
    t.match(e, { decision: 'deny', reason: 'private-address' }, `${name} audited`);
  }
});

t.test('a CNAME chain is followed and served as A records of the asked name', async (t) => {
  const r = await dig(core.ns, 'alias.test');
  t.equal(r.status, 'NOERROR');
  t.same(r.answers, [WEB]);
  t.match(r.out, /^alias\.test\.\s+\d+\s+IN\s+A\s+203\.0\.113\.10$/m);
  t.notMatch(r.out, /CNAME/, 'the CDN name is not handed to the sandbox');
});

t.test('TCP works, and a truncated upstream answer is retried over TCP', async (t) => {
  t.same((await dig(core.ns, 'allowed.test', { tcp: true })).answers, [WEB], 'dig +tcp');
  t.same((await dig(core.ns, 'trunc.test')).answers, [WEB]);
  t.same(
    upstreamSaw('trunc.test').map((q) => q.transport),
    ['udp', 'tcp'],
    'upstream was asked over UDP, then TCP',
  );
});

t.test('answers are cached by TTL', async (t) => {
  const first = await dig(core.ns, 'cache.test');
  const second = await dig(core.ns, 'cache.test');
  t.same(second.answers, first.answers);
  t.equal(upstreamSaw('cache.test').length, 1, 'one upstream query for two lookups');
  t.ok(second.ttls[0]! <= 300 && second.ttls[0]! > 290, 'the remaining TTL is served');
});

t.test('upstream NXDOMAIN and SERVFAIL pass through as such', async (t) => {
  t.equal((await dig(core.ns, 'missing.test')).status, 'NXDOMAIN');
  t.equal((await dig(core.ns, 'broken.test')).status, 'SERVFAIL');
});

t.test('upstream down: SERVFAIL after the timeout; a second upstream takes over', async (t) => {
  const dead = await core.extraGateway(['--dns-port', '5301', '--proxy-port', '3301', '--upstream', DEAD_UPSTREAM, '--dns-timeout', '0.3']);
  const started = Date.now();
  const r = await dig(core.ns, 'allowed.test', { port: 5301 });
  t.equal(r.status, 'SERVFAIL');
  t.ok(Date.now() - started < 4000, 'answered within the timeout, not left hanging');
  await dead.waitForAudit((e) => e.event === 'dns' && e.reason === 'upstream-failed');
  const failover = await core.extraGateway([
    '--dns-port',
    '5302',
    '--proxy-port',
    '3302',
    '--upstream',
    DEAD_UPSTREAM,
    '--upstream',
    UPSTREAM,
    '--dns-timeout',
    '0.3',
  ]);
  t.same((await dig(core.ns, 'allowed.test', { port: 5302 })).answers, [WEB], 'the second upstream answered');
  await failover.stop();
  await dead.stop();
});

t.test('hostile and malformed packets never crash the resolver', async (t) => {
  const before = core.world.queries().length;
  const r = await core.ns.run(process.execPath, [join(ROOT, 'dist/test/fixtures/dns-fuzz.js'), '127.0.0.1', '53', '3000', '7'], {
    timeoutMs: 120_000,
  });
  const stats = JSON.parse(r.stdout.trim()) as { sent: number; replies: number };
  t.ok(stats.sent >= 2900, `sent ${stats.sent} packets`);
  t.notOk(core.gateway.proc.exited, 'the gateway is still running');
  t.same((await dig(core.ns, 'allowed.test')).answers, [WEB], 'and still answers UDP');
  t.same((await dig(core.ns, 'allowed.test', { tcp: true })).answers, [WEB], 'and TCP');
  const forwarded = core.world
    .queries()
    .slice(before)
    .map((q) => q.name);
  t.notOk(
    forwarded.some((n) => n !== 'allowed.test'),
    `only allowed names reached the upstream (${[...new Set(forwarded)].join(', ')})`,
  );
  t.notMatch(core.gateway.proc.output(), /TypeError|RangeError|Uncaught/, 'no exception in the gateway output');
});

t.test('malformed queries get FORMERR from the header alone; responses get no reply at all', async (t) => {
  const script = `
    import dgram from 'node:dgram';
    const q = (id, flags, qd, an) => { const b = Buffer.alloc(12); b.writeUInt16BE(id, 0); b.writeUInt16BE(flags, 2); b.writeUInt16BE(qd, 4); b.writeUInt16BE(an, 6); return b; };
    const s = dgram.createSocket('udp4');
    const got = {};
    s.on('message', (m) => { got[m.readUInt16BE(0)] = { rcode: m[3] & 15, qr: m[2] >> 7 }; });
    s.bind(0, '127.0.0.1', () => {
      s.send(q(101, 0x0100, 65535, 65535), 53, '127.0.0.1');
      s.send(q(102, 0x0100, 2, 0), 53, '127.0.0.1');
      s.send(q(103, 0x8180, 1, 1), 53, '127.0.0.1');
      setTimeout(() => { console.log(JSON.stringify(got)); s.close(); }, 500);
    });`;
  const got = await nodeIn<Record<string, { rcode: number; qr: number }>>(core.ns, script);
  t.same(got['101'], { rcode: 1, qr: 1 }, '65535 claimed questions: FORMERR');
  t.same(got['102'], { rcode: 1, qr: 1 }, 'two questions: FORMERR');
  t.notOk(got['103'], 'a response sent to the resolver is never answered');
});
