// Live reload of allowed_domains.txt: through the real gateway, with a tunnel open across each change.
import t from 'tap';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { effectivePath } from '../proxy/config.js';
import { startCore, curl, dig, openTunnel, PROXY, WEB, type Core } from './harness/core.js';

let core: Core;
t.before(async () => {
  // Rules come from the file only, so that editing it can add and remove them.
  core = await startCore({ flagRules: [], fileRules: ['allowed.test', 'allowed.test:2222/tcp'] });
});
t.teardown(() => core?.close());

const reloads = () => core.gateway.audit().filter((e) => e.event === 'reload');
/** Make a change, then wait for the first reload line after it that satisfies the predicate. */
async function reloadAfter(change: () => void, pred: (e: Record<string, unknown>) => boolean = () => true) {
  const seen = reloads().length;
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
  await reloadAfter(() => writeFileSync(core.allowlistPath, 'allowed.test\nallowed.test:2222/tcp\nsecond.test\n'), (e) => e.ok === true);
  const tunnel = openTunnel(core.ns);
  await tunnel.waitFor(/BANNER/);
  // Atomic replace (write elsewhere, rename over), as editors and config tools do.
  const tmp = join(core.dir, 'allowed_domains.txt.new');
  writeFileSync(tmp, 'second.test\n');
  const e = await reloadAfter(() => renameSync(tmp, core.allowlistPath));
  t.match(e, { ok: true, added: [], removed: ['allowed.test', 'allowed.test:2222/tcp'], closed_tunnels: 1 });
  await tunnel.waitFor(/TUNNEL CLOSED/, 5000);
  t.match(await core.gateway.waitForAudit((x) => x.event === 'tunnel_close' && x.closed_by === 'policy-reload'), { host: 'allowed.test', port: 2222 });
  t.equal((await dig(core.ns, 'allowed.test')).status, 'NXDOMAIN', 'the removed name no longer resolves (cache dropped)');
  const r = await curl(core.ns, ['-x', PROXY, '--cacert', core.cert, 'https://allowed.test/']);
  t.equal(r.connect, 403, 'and new CONNECTs are refused');
  const eff = JSON.parse(readFileSync(effectivePath(core.allowlistPath), 'utf8')) as { rules: Array<{ rule: string }> };
  t.same(eff.rules.map((x) => x.rule), ['second.test'], 'the effective list follows');
});

t.test('SIGHUP re-reads the file (a reload line even when nothing changed)', async (t) => {
  await new Promise((r) => setTimeout(r, 1500)); // let the file watcher settle
  const e = await reloadAfter(() => core.gateway.proc.child.kill('SIGHUP'));
  t.match(e, { ok: true, added: [], removed: [], rules: 1 });
  t.notOk(core.gateway.proc.exited, 'SIGHUP does not stop the gateway');
});
