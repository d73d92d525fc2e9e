// Live reload of allowed_domains.txt: through the real gateway, with a tunnel open across each change.
import t from 'tap';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { effectivePath } from '../proxy/config.js';
import { startCore, curl, dig, nodeIn, openTunnel, PROXY, WEB, type Core } from './harness/core.js';
import { ROOT } from './harness/world.js';
import type { Proc } from './harness/netns.js';

let core: Core;
t.before(async () => {
  // Rules come from the file only, so that editing it can add and remove them.
  core = await startCore({ flagRules: [], fileRules: ['allowed.test', 'allowed.test:2222/tcp'], gatewayArgs: ['--dns-timeout', '6'] });
});
t.teardown(() => core?.close());

const reloads = () => core.gateway.audit().filter((e) => e.event === 'reload');
/** Make a change, then wait for the first reload line after it that satisfies the predicate. */
async function reloadAfter(change: () => void, pred: (e: Record<string, unknown>) => boolean = () => true) {
  const seen = (await core.gateway.settledAudit()).filter((e) => e.event === 'reload').length;
  change();
  await core.gateway.waitForAudit(() => reloads().slice(seen).some(pred), 5000);
  return reloads().slice(seen).find(pred)!;
}

t.test('the effective allowlist is written beside the file, with provenance', async (t) => {
  const eff = JSON.parse(readFileSync(effectivePath(core.allowlistPath), 'utf8')) as { rules: unknown[] };
  t.equal(effectivePath(core.allowlistPath), join(core.dir, 'allowed_domains.effective.json'));
  t.same(eff.rules, [
    { rule: 'allowed.test', source: 'file', origin: `${core.allowlistPath}:2` },
    { rule: 'allowed.test:2222/tcp', source: 'file', origin: `${core.allowlistPath}:3` },
  ]);
});

t.test('adding a name applies live, without dropping an open tunnel', async (t) => {
  const tunnel = openTunnel(core.ns);
  await tunnel.waitFor(/BANNER 203\.0\.113\.10:2222/);
  t.equal((await dig(core.ns, 'second.test')).status, 'NXDOMAIN', 'second.test is not allowed yet');
  const e = await reloadAfter(() => writeFileSync(core.allowlistPath, 'allowed.test\nallowed.test:2222/tcp\nsecond.test\n'));
  t.match(e, { ok: true, added: ['second.test'], removed: [], closed_tunnels: 0 });
  t.same((await dig(core.ns, 'second.test')).answers, [WEB], 'the new name resolves');
  t.equal((await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, 'https://second.test/'])).code, 200, 'and connects');
  const ticks = (tunnel.output().match(/tick\d+/g) ?? []).length;
  await new Promise((r) => setTimeout(r, 600));
  t.ok((tunnel.output().match(/tick\d+/g) ?? []).length > ticks, 'the open tunnel still carries data');
  t.notMatch(tunnel.output(), /TUNNEL CLOSED/);
  await tunnel.stop('SIGKILL');
});

t.test('an invalid file is rejected with a logged error; the previous policy stays in force', async (t) => {
  const e = await reloadAfter(() => writeFileSync(core.allowlistPath, 'allowed.test\n*.com\nhttps://x.test/\n'));
  t.match(e, { ok: false, level: 'error' });
  t.match((e.errors as string[]).join('\n'), /allowed_domains\.txt:2: .*public suffix[\s\S]*allowed_domains\.txt:3: .*URL/);
  t.same((await dig(core.ns, 'second.test')).answers, [WEB], 'second.test is still allowed');
  t.match(core.gateway.proc.output(), /allowlist not reloaded, the previous one stays in force/);
});

t.test('removing a name: it stops resolving, new CONNECTs are refused, its open tunnels are closed', async (t) => {
  await reloadAfter(
    () => writeFileSync(core.allowlistPath, 'allowed.test\nallowed.test:2222/tcp\nsecond.test\n'),
    (e) => e.ok === true,
  );
  const tunnel = openTunnel(core.ns);
  await tunnel.waitFor(/BANNER/);
  // Atomic replace (write elsewhere, rename over), as editors and config tools do.
  const tmp = join(core.dir, 'allowed_domains.txt.new');
  writeFileSync(tmp, 'second.test\n');
  const e = await reloadAfter(() => renameSync(tmp, core.allowlistPath));
  t.match(e, { ok: true, added: [], removed: ['allowed.test', 'allowed.test:2222/tcp'], closed_tunnels: 1 });
  await tunnel.waitFor(/TUNNEL CLOSED/, 5000);
  t.match(await core.gateway.waitForAudit((x) => x.event === 'tunnel_close' && x.closed_by === 'policy-reload'), {
    host: 'allowed.test',
    port: 2222,
  });
  t.equal((await dig(core.ns, 'allowed.test')).status, 'NXDOMAIN', 'the removed name no longer resolves (cache dropped)');
  const r = await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, 'https://allowed.test/']);
  t.equal(r.connect, 403, 'and new CONNECTs are refused');
  const eff = JSON.parse(readFileSync(effectivePath(core.allowlistPath), 'utf8')) as { rules: Array<{ rule: string }> };
  t.same(
    eff.rules.map((x) => x.rule),
    ['second.test'],
    'the effective list follows',
  );
});

t.test('SIGHUP re-reads the file (a reload line even when nothing changed)', async (t) => {
  await new Promise((r) => setTimeout(r, 1500)); // let the file watcher settle
  const e = await reloadAfter(() => core.gateway.proc.child.kill('SIGHUP'));
  t.match(e, { ok: true, added: [], removed: [], rules: 1 });
  t.notOk(core.gateway.proc.exited, 'SIGHUP does not stop the gateway');
});

let origin: Proc | undefined;
t.teardown(() => origin?.stop());
/** The raw-parsing origin on allowed.test's address, port 8080 (it logs every request it parses). */
async function startOrigin(): Promise<Proc> {
  if (!origin) {
    origin = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8080']);
    await origin.waitFor(/rawhttp ready/);
  }
  return origin;
}

// Revocation of everything the proxy holds, not only tunnels: WebSockets, streaming plain-HTTP answers,
// and connections still being set up when the reload comes (their decision is re-checked after the lookup).
t.test('a reload closes WebSockets and streaming plain-HTTP answers to hosts no longer allowed', async (t) => {
  await startOrigin();
  await reloadAfter(
    () => writeFileSync(core.allowlistPath, 'allowed.test\nallowed.test:8080\nsecond.test\n'),
    (e) => e.ok === true && (e.rules as number) === 3,
  );
  const ws = core.ns.spawn(process.execPath, [
    '--input-type=module',
    '-e',
    `import net from 'node:net';
     const s = net.connect(3128, '127.0.0.1');
     const frame = (text) => { const p = Buffer.from(text); const mask = Buffer.from([1, 2, 3, 4]);
       return Buffer.concat([Buffer.from([0x81, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]); };
     let n = 0; let up = false;
     s.on('data', (d) => { process.stdout.write(d.toString('latin1').replace(/[^\\x20-\\x7e\\n]/g, '.') + '\\n');
       if (!up) { up = true; setInterval(() => s.write(frame('ping' + (n++))), 200); } });
     s.on('close', () => { process.stdout.write('\\nWS CLOSED\\n'); process.exit(0); });
     s.on('error', () => {});
     s.write('GET http://allowed.test/ws HTTP/1.1\\r\\nHost: allowed.test\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n');
     setTimeout(() => process.exit(0), 30000);`,
  ]);
  const stream = core.ns.spawn(process.execPath, [
    '--input-type=module',
    '-e',
    `import net from 'node:net';
     const s = net.connect(3128, '127.0.0.1');
     s.on('data', (d) => process.stdout.write(d.toString('latin1')));
     s.on('close', () => { process.stdout.write('\\nSTREAM CLOSED\\n'); process.exit(0); });
     s.on('error', () => {});
     s.write('GET http://allowed.test:8080/stream HTTP/1.1\\r\\nHost: allowed.test:8080\\r\\n\\r\\n');
     setTimeout(() => process.exit(0), 30000);`,
  ]);
  // The same streaming answer, over plain HTTP inside a CONNECT tunnel.
  const tunnelled = core.ns.spawn(process.execPath, [
    '--input-type=module',
    '-e',
    `import net from 'node:net';
     const s = net.connect(3128, '127.0.0.1');
     s.on('data', (d) => process.stdout.write(d.toString('latin1')));
     s.on('close', () => { process.stdout.write('\\nTUNNEL CLOSED\\n'); process.exit(0); });
     s.on('error', () => {});
     s.write('CONNECT allowed.test:8080 HTTP/1.1\\r\\nHost: allowed.test:8080\\r\\n\\r\\n');
     setTimeout(() => s.write('GET /stream HTTP/1.1\\r\\nHost: allowed.test:8080\\r\\n\\r\\n'), 300);
     setTimeout(() => process.exit(0), 30000);`,
  ]);
  await ws.waitFor(/ping3/, 10_000);
  await stream.waitFor(/tick3/, 10_000);
  await tunnelled.waitFor(/tick3/, 10_000);
  const e = await reloadAfter(
    () => writeFileSync(core.allowlistPath, 'second.test\n'),
    (x) => x.ok === true && (x.rules as number) === 1,
  );
  t.ok((e.closed_tunnels as number) >= 3, `every connection counted (${String(e.closed_tunnels)})`);
  await ws.waitFor(/WS CLOSED/, 5000);
  await stream.waitFor(/STREAM CLOSED/, 5000);
  await tunnelled.waitFor(/TUNNEL CLOSED/, 5000);
  t.pass('the WebSocket and both streaming answers were closed by the reload');
  t.match(await core.gateway.waitForAudit((x) => x.event === 'tunnel_close' && x.port === 8080 && x.closed_by === 'policy-reload'), {
    host: 'allowed.test',
  });
  t.match(await core.gateway.waitForAudit((x) => x.event === 'tunnel_close' && x.port === 80 && x.closed_by === 'policy-reload'), {
    host: 'allowed.test',
  });
  t.match(await core.gateway.waitForAudit((x) => x.event === 'http' && x.port === 8080 && x.reason === 'policy-reload'), {
    host: 'allowed.test',
    decision: 'deny',
  });
});

t.test('a CONNECT or request whose DNS answer comes after a reload is refused, never dialled', async (t) => {
  const origin = await startOrigin();
  await reloadAfter(
    () => writeFileSync(core.allowlistPath, 'second.test\nslow.test\nslow.test:8080\n'),
    (e) => e.ok === true && (e.rules as number) === 3,
  );
  // slow.test's upstream answer takes 2.5 s; the reload that removes it lands while both wait for it.
  // Both requests come from one process, written at once (two processes start seconds apart on a loaded
  // machine, and the second could then be decided after the reload: refused, but as not-allowlisted).
  const both = nodeIn<{ connect: string; plain: string }>(
    core.ns,
    `import net from 'node:net';
     const replies = { connect: '', plain: '' }; let closed = 0;
     const done = () => { console.log(JSON.stringify(replies)); process.exit(0); };
     const open = (key, payload) => {
       const s = net.connect(3128, '127.0.0.1');
       s.on('data', (d) => { replies[key] += d.toString('latin1'); });
       s.on('error', () => {});
       s.on('close', () => { if (++closed === 2) done(); });
       s.write(payload);
     };
     open('connect', ${JSON.stringify('CONNECT slow.test:443 HTTP/1.1\r\nHost: slow.test:443\r\n\r\n')});
     open('plain', ${JSON.stringify('GET http://slow.test:8080/late HTTP/1.1\r\nHost: slow.test:8080\r\n\r\n')});
     setTimeout(done, 8000);`,
  );
  // Wait until the lookup is in flight (the fake upstream has the query) and both connections are open
  // at the gateway, then reload.
  const established = async () => {
    const r = await core.ns.run('ss', ['-Htn', 'state', 'established', '( sport = :3128 )'], { reject: false });
    return String(r.stdout)
      .split('\n')
      .filter((l) => l.trim()).length;
  };
  for (let i = 0; i < 100 && !(core.world.queries().some((q) => q.name === 'slow.test') && (await established()) >= 2); i++)
    await new Promise((r) => setTimeout(r, 50));
  t.ok(
    core.world.queries().some((q) => q.name === 'slow.test'),
    'the lookup was in flight when the reload came',
  );
  // both requests are read the moment they arrive (a few ms); give them a little more, well inside the 2.5 s
  await new Promise((r) => setTimeout(r, 200));
  await reloadAfter(
    () => writeFileSync(core.allowlistPath, 'second.test\n'),
    (e) => e.ok === true && (e.rules as number) === 1,
  );
  const r = await both;
  const [c, p] = [{ reply: r.connect }, { reply: r.plain }];
  t.match(
    c.reply,
    /^HTTP\/1\.1 403 [\s\S]*x-codex-egress-deny: policy-reload/,
    'the CONNECT decided before the reload is refused after its lookup',
  );
  t.notMatch(c.reply, /200 Connection Established/);
  t.match(p.reply, /^HTTP\/1\.1 403 [\s\S]*x-codex-egress-deny: policy-reload/, 'so is the plain request');
  t.notMatch(p.reply, /origin saw/);
  t.notMatch(origin.output(), /"path":"\/late"/, 'and the origin never received it');
  t.match(await core.gateway.waitForAudit((x) => x.event === 'connect' && x.host === 'slow.test' && x.reason === 'policy-reload'), {
    decision: 'deny',
    status: 403,
  });
});
