// Transparent egress by name (proxy/transparent/), proved in the three-namespace network
// (test/harness/topology.ts): clients in the sandbox with no proxy settings, resolving through the
// gateway (the sandbox's resolv.conf names it), reach allowed names on their allowed ports through the
// gateway's pool addresses — checked, audited and revoked as CONNECT tunnels are — and nothing else.
import t from 'tap';
import { existsSync, mkdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditLine, RunningGateway } from './harness/world.js';
import { startGatewayIn, startWorld } from './harness/world.js';
import {
  closeTopology,
  curl,
  dig,
  startTopology,
  tcpProbe,
  topologyGatewayArgs,
  writeAllowlist,
  GATEWAY,
  NEW_WEB,
  PROXY,
  UPSTREAM,
  WEB,
  type Topology,
} from './harness/topology.js';

const RULES = ['allowed.test', 'allowed.test:22', 'new.test', 'rebind.test', 'full1.test', 'full2.test'];
/** The default pool: the upper half of the gateway's /24. */
const inPool = (ip: string | undefined) =>
  !!ip && /^10\.10\.0\.(\d+)$/.test(ip) && Number(ip.split('.')[3]) >= 129 && Number(ip.split('.')[3]) <= 254;

let topo: Topology;
let gw: RunningGateway | undefined;
let allowlistPath: string;
let resolvDir: string | undefined;
let madeNetnsDir = false;

t.before(async () => {
  topo = await startTopology();
  allowlistPath = writeAllowlist(topo.dir, RULES);
  // An SSH-like service (it speaks first, then echoes) on allowed.test:22 in the fake internet.
  const ssh = await startWorld(topo.internet, topo.dir, { banner: [{ ip: WEB, port: 22 }] });
  const close = topo.close;
  topo.close = async () => {
    await ssh.stop().catch(() => undefined);
    await close();
  };
  // `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf: the sandbox's
  // resolver is the gateway, as a container's is (`--dns`). Only this namespace's file is made.
  madeNetnsDir = !existsSync('/etc/netns');
  resolvDir = join('/etc/netns', topo.sandbox.name);
  mkdirSync(resolvDir, { recursive: true });
  writeFileSync(join(resolvDir, 'resolv.conf'), `nameserver ${GATEWAY}\noptions timeout:1 attempts:1\n`);
});
t.teardown(async () => {
  await closeTopology(topo, [gw]);
  if (resolvDir) rmSync(resolvDir, { recursive: true, force: true });
  if (madeNetnsDir) {
    try {
      rmdirSync('/etc/netns'); // only when empty: another run may be using it
    } catch {
      /* not empty */
    }
  }
});

const gatewayArgs = (...extra: string[]) => topologyGatewayArgs(allowlistPath, '--transparent', ...extra);
const audited = (pred: (e: AuditLine) => boolean, timeoutMs = 5000) => gw!.waitForAudit(pred, timeoutMs);
/** curl in the sandbox with no proxy settings at all (the environment cleared). */
const direct = (...args: string[]) => curl(topo.sandbox, ['--noproxy', '*', '--cacert', topo.cert, ...args]);
/** The gateway closed the connection (a FIN, or a reset when the client's bytes were still unread). */
const refused = (outcome: string) => outcome === 'closed' || outcome === 'ECONNRESET';
/** The address DNS answers for `name` (its pool address); no answer throws, so a refusal is never tested against nothing. */
const poolOf = async (name: string): Promise<string> => {
  const d = await dig(topo.sandbox, GATEWAY, name);
  const ip = d.answers[0];
  if (ip === undefined) throw new Error(`no address for ${name} (${d.status})`);
  return ip;
};

/** A TCP client in the sandbox: connect by name (the sandbox's resolver), send `send`, collect what comes back until close or `ms`. */
async function talk(host: string, port: number, send: string, ms = 1500): Promise<{ outcome: string; data: string }> {
  const script = `const s = require('node:net').connect({ host: ${JSON.stringify(host)}, port: ${port} });
    let data = ''; const end = (o) => { console.log(JSON.stringify({ outcome: o, data })); process.exit(0); };
    s.on('connect', () => s.write(${JSON.stringify(send)}));
    s.on('data', (d) => (data += d));
    s.on('close', () => end('closed'));
    s.on('error', (e) => end(e.code));
    setTimeout(() => end('open'), ${ms});`;
  const r = await topo.sandbox.run(process.execPath, ['-e', script], { reject: false, timeoutMs: ms + 15_000 });
  return JSON.parse(String(r.stdout).trim() || '{"outcome":"no output","data":""}');
}

t.test('the gateway starts in transparent mode: pool in the audit, /healthz, and the INPUT rules', async (t) => {
  gw = await startGatewayIn(topo.gateway, topo.dir, gatewayArgs());
  t.match(await audited((e) => e.event === 'start'), { firewall: true, transparent: '10.10.0.128/25' });
  const h = await curl(topo.sandbox, [`${PROXY}/healthz`]);
  t.match(JSON.parse(h.body), { healthy: true, transparent: { pool: '10.10.0.128/25', size: 126, ports: [22, 80, 443] } });
  const save = String((await topo.gateway.run('iptables-save', ['-t', 'filter'])).stdout);
  t.match(
    save,
    `-A CODEX-EGRESS-IN -s 10.10.0.0/24 -d 10.10.0.128/25 -i ${topo.sandboxIf} -p tcp -m set --match-set codex-egress-ports dst -j ACCEPT`,
  );
  t.match(
    save,
    `-A CODEX-EGRESS-IN -s 10.10.0.0/24 -d 10.10.0.128/25 -i ${topo.sandboxIf} -p udp -m comment --comment "codex-egress:in-pool-udp" -j REJECT`,
  );
});

t.test('DNS answers an allowed name with its own pool address, the same one each time; the audit keeps the real one', async (t) => {
  const a = await dig(topo.sandbox, GATEWAY, 'allowed.test');
  t.equal(a.status, 'NOERROR');
  t.equal(a.answers.length, 1);
  t.ok(inPool(a.answers[0]), `allowed.test → ${a.answers[0]}, a pool address (never ${WEB})`);
  t.same((await dig(topo.sandbox, GATEWAY, 'ALLOWED.test.')).answers, a.answers, 'another spelling of the name: the same address');
  const n = await dig(topo.sandbox, GATEWAY, 'new.test');
  t.ok(inPool(n.answers[0]) && n.answers[0] !== a.answers[0], `new.test → ${n.answers[0]}: one name per address`);
  t.match(await audited((e) => e.event === 'dns' && e.name === 'allowed.test'), { decision: 'allow', answers: a.answers, resolved: [WEB] });
  const six = await topo.sandbox.run('dig', ['+time=1', '+tries=1', `@${GATEWAY}`, 'allowed.test', 'AAAA', '+short'], { reject: false });
  t.equal(String(six.stdout).trim(), '', 'AAAA: no answer (IPv6 never leaves)');
});

t.test('a rebinding answer (allowed name, private address) is refused: no pool address for it', async (t) => {
  const d = await dig(topo.sandbox, GATEWAY, 'rebind.test');
  t.equal(d.status, 'REFUSED');
  t.same(d.answers, []);
});

t.test('a denied name still gets NXDOMAIN (never a pool address) and the upstream never sees it', async (t) => {
  const d = await dig(topo.sandbox, GATEWAY, 'denied.test');
  t.equal(d.status, 'NXDOMAIN');
  t.same(d.answers, []);
  t.notOk(
    topo.world.queries().some((q) => q.name === 'denied.test'),
    'never forwarded',
  );
  const c = await direct('https://denied.test/');
  t.not(c.exitCode, 0, 'curl cannot resolve it');
});

t.test('no proxy settings: HTTPS, plain HTTP and an SSH banner reach allowed names by name', async (t) => {
  const s = await direct('https://allowed.test/hello');
  t.equal(s.code, 200, s.stderr);
  t.match(s.body, `hello from ${WEB}:443 host=allowed.test path=/hello`);
  t.match(await audited((e) => e.event === 'connect' && e.mode === 'transparent' && e.port === 443 && e.decision === 'allow'), {
    host: 'allowed.test',
    ip: WEB,
    reason: 'allowed',
  });
  t.match(await audited((e) => e.event === 'tunnel_close' && e.mode === 'transparent' && e.port === 443), {
    host: 'allowed.test',
    ip: WEB,
  });

  const h = await direct('http://allowed.test/plain');
  t.equal(h.code, 200, h.stderr);
  t.match(h.body, `hello from ${WEB}:80 host=allowed.test path=/plain`);
  t.match(await audited((e) => e.event === 'http' && e.mode === 'transparent'), { host: 'allowed.test', port: 80, decision: 'allow' });

  const ssh = await talk('allowed.test', 22, 'SSH-2.0-OpenSSH_9.9 test\r\n');
  t.match(ssh.data, `BANNER ${WEB}:22`, 'the banner came from allowed.test:22');
  t.match(ssh.data, 'SSH-2.0-OpenSSH_9.9 test', 'and the identification line went through');

  const node = await topo.sandbox.run(
    process.execPath,
    [
      '-e',
      `fetch('http://allowed.test/fetch').then(async (r) => console.log(r.status, await r.text()), (e) => console.log('error', e.cause?.code ?? e.message))`,
    ],
    { reject: false, timeoutMs: 20_000 },
  );
  t.match(
    String(node.stdout),
    `200 hello from ${WEB}:80 host=allowed.test path=/fetch`,
    "Node's fetch (which ignores proxy variables) works by name",
  );
});

t.test('the pool address is the name: SNI or Host of another allowed name is refused', async (t) => {
  const a = await poolOf('allowed.test');
  const r = await direct('--resolve', `new.test:443:${a}`, 'https://new.test/');
  t.not(r.code, 200, "TLS naming new.test on allowed.test's address gets nowhere");
  t.match(await audited((e) => e.event === 'connect' && e.mode === 'transparent' && e.reason === 'sni-mismatch'), {
    host: 'allowed.test',
    decision: 'deny',
    detail: /new\.test/,
  });
  const h = await direct('-H', 'Host: new.test', `http://${a}/`);
  t.equal(h.code, 403, "Host: new.test on allowed.test's address");
  t.match(await audited((e) => e.event === 'http' && e.mode === 'transparent' && e.reason === 'host-mismatch'), { host: 'allowed.test' });
  const noSni = await direct('-k', `https://${a}/`);
  t.not(noSni.code, 200, 'TLS with no SNI (a client dialling the address) is refused');
  t.match(
    await audited((e) => e.event === 'connect' && e.mode === 'transparent' && e.reason === 'sni-mismatch' && /null/.test(String(e.detail))),
    { host: 'allowed.test' },
  );
  // A second request on the same connection, for another allowed name: refused, the first one answered.
  const two = await talk(a, 80, 'GET /one HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /two HTTP/1.1\r\nHost: new.test\r\n\r\n', 2000);
  t.match(two.data, /^HTTP\/1\.1 200[^]*path=\/one[^]*HTTP\/1\.1 403/, 'the first answered, the second refused');
  t.notMatch(two.data, 'path=/two');
  const ok = await direct('--resolve', `new.test:443:${await poolOf('new.test')}`, 'https://new.test/');
  t.equal(ok.code, 200, `new.test on its own address works: ${ok.stderr}`);
  t.match(ok.body, `hello from ${NEW_WEB}:443`);
});

t.test("a port not in the name's rule, an address that stands for no name, CONNECT to a pool address: refused", async (t) => {
  const n = await talk('new.test', 22, 'SSH-2.0-x\r\n', 1000);
  t.ok(refused(n.outcome), `new.test (no port rule) on 22: ${n.outcome}`);
  t.notMatch(n.data, 'BANNER', 'nothing came from the internet');
  t.match(await audited((e) => e.event === 'connect' && e.mode === 'transparent' && e.host === 'new.test' && e.port === 22), {
    decision: 'deny',
    reason: 'port-not-allowed',
  });
  t.not(await tcpProbe(topo.sandbox, await poolOf('allowed.test'), 8443, 1000), 'connected', 'a port no rule allows: no listener, dropped');
  const notTls = await talk('new.test', 443, 'SSH-2.0-x\r\n', 1000);
  t.ok(refused(notTls.outcome), `SSH on 443 of a rule without a port: ${notTls.outcome}`);
  t.match(
    await audited(
      (e) => e.event === 'connect' && e.mode === 'transparent' && e.host === 'new.test' && e.port === 443 && e.reason === 'tls-required',
    ),
    { decision: 'deny' },
  );

  const unused = await talk('10.10.0.254', 443, 'x', 1000);
  t.ok(refused(unused.outcome), `a pool address given to no name: ${unused.outcome} at once`);
  t.match(await audited((e) => e.event === 'connect' && e.mode === 'transparent' && e.host === '10.10.0.254'), {
    decision: 'deny',
    reason: 'not-allowlisted',
    detail: /stands for no name/,
  });

  const c = await curl(topo.sandbox, ['-x', PROXY, `https://${await poolOf('allowed.test')}/`]);
  t.equal(c.connect, 403, 'CONNECT to a pool address is an IP literal');
  t.match(await audited((e) => e.event === 'connect' && e.reason === 'ip-literal' && !e.mode), { decision: 'deny' });
});

t.test('UDP (QUIC) to a pool address is refused at once, not left to time out', async (t) => {
  const a = await poolOf('allowed.test');
  const started = Date.now();
  const script = `const s = require('node:dgram').createSocket('udp4');
    s.on('error', (e) => { console.log(e.code); process.exit(0); });
    s.connect(443, ${JSON.stringify(a)}, () => { s.send(Buffer.from('quic initial?')); setTimeout(() => s.send(Buffer.from('again')), 100); });
    setTimeout(() => { console.log('no answer'); process.exit(0); }, 3000);`;
  const r = await topo.sandbox.run(process.execPath, ['-e', script], { reject: false, timeoutMs: 20_000 });
  t.equal(String(r.stdout).trim(), 'ECONNREFUSED', 'ICMP port unreachable came back');
  t.ok(Date.now() - started < 2500, `refused in ${Date.now() - started} ms`);
});

t.test('bypasses that fail without transparent mode still fail: direct TCP, direct DNS', async (t) => {
  t.not(await tcpProbe(topo.sandbox, WEB, 443, 1000), 'connected', 'the real address of allowed.test, directly');
  t.equal((await dig(topo.sandbox, UPSTREAM, 'direct.test')).status, 'TIMEOUT', 'the upstream resolver, directly');
  t.not(await tcpProbe(topo.sandbox, GATEWAY, 443, 1000), 'connected', "the gateway's own address on 443 (only the pool listens there)");
});

t.test('a reload revokes transparent connections, releases the address, and the name is gone', async (t) => {
  const a = await poolOf('allowed.test');
  // A long-lived connection (the echo service on 22) open while the allowlist changes.
  const script = `const s = require('node:net').connect({ host: 'allowed.test', port: 22 });
    let data = ''; s.on('connect', () => s.write('SSH-2.0-x\\r\\n'));
    s.on('data', (d) => { data += d; if (data.includes('SSH-2.0-x')) console.log('OPEN'); });
    s.on('close', () => { console.log('CLOSED'); process.exit(0); });
    s.on('error', () => undefined);
    setTimeout(() => { console.log('STILL-OPEN'); process.exit(0); }, 15000);`;
  const p = topo.sandbox.spawn(process.execPath, ['-e', script]);
  await p.waitFor(/OPEN/, 10_000);
  writeAllowlist(topo.dir, ['new.test', 'rebind.test', 'full1.test', 'full2.test']);
  const reload = await audited((e) => e.event === 'reload' && e.ok === true && (e.removed as string[]).includes('allowed.test'), 8000);
  t.ok((reload.closed_tunnels as number) >= 1, 'the reload closed it');
  t.ok((reload.released as string[]).includes(`${a}=allowed.test`), `released ${a}`);
  await p.waitFor(/CLOSED/, 10_000);
  t.match(
    await audited((e) => e.event === 'tunnel_close' && e.mode === 'transparent' && e.port === 22 && e.closed_by === 'policy-reload'),
    { host: 'allowed.test' },
  );
  const after = await talk(a, 443, 'x', 1000);
  t.ok(refused(after.outcome), `the released address stands for nothing: ${after.outcome}`);
  t.equal((await dig(topo.sandbox, GATEWAY, 'allowed.test')).status, 'NXDOMAIN');
  t.not((await direct('--resolve', `allowed.test:443:${a}`, 'https://allowed.test/')).code, 200);
  writeAllowlist(topo.dir, RULES);
  await audited((e) => e.event === 'reload' && e.ok === true && (e.added as string[]).includes('allowed.test'));
  const again = await poolOf('allowed.test');
  t.ok(inPool(again) && again !== a, `allowed.test gets a new address (${again}); ${a} stays quarantined`);
  t.equal((await direct('https://allowed.test/')).code, 200, 'and works again');
});

t.test('an exhausted pool answers SERVFAIL (never an upstream address) and says so in the audit', async (t) => {
  await gw!.stop();
  gw = await startGatewayIn(topo.gateway, topo.dir, gatewayArgs('--transparent-pool', '10.10.0.248/30'));
  t.ok(inPool((await dig(topo.sandbox, GATEWAY, 'allowed.test')).answers[0]));
  t.ok(inPool((await dig(topo.sandbox, GATEWAY, 'new.test')).answers[0]));
  const full = await dig(topo.sandbox, GATEWAY, 'full1.test');
  t.equal(full.status, 'SERVFAIL');
  t.same(full.answers, []);
  t.match(await audited((e) => e.event === 'dns' && e.name === 'full1.test'), {
    decision: 'deny',
    reason: 'pool-exhausted',
    rcode: 'SERVFAIL',
    answers: [],
    resolved: ['203.0.113.41'],
  });
  t.equal((await direct('https://allowed.test/')).code, 200, 'names that have an address keep working');
});
