// Found by an attack review: a DNS query decided before a reload is answered after it. The DNS server decides,
// awaits the upstream, and serves the answer (and, with the firewall, puts the address in the allow
// set) without asking the policy again, so a name removed while its lookup is in flight still gets
// its address, and the kernel allows that address for the answer's TTL after the reload flushed it.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { startCore, dig, type Core } from './harness/core.js';
import { Resolver } from '../proxy/dns/resolver.js';
import type { UpstreamClient } from '../proxy/dns/upstream.js';

let core: Core;
t.before(async () => {
  core = await startCore({ flagRules: [], fileRules: ['allowed.test', 'slow.test'], gatewayArgs: ['--dns-timeout', '6'] });
});
t.teardown(() => core?.close());

const reloads = () => core.gateway.audit().filter((e) => e.event === 'reload');

t.test('a DNS answer that arrives after a reload removed the name is not served', async (t) => {
  // slow.test's upstream answer takes 2.5 s; the reload that removes it lands while dig waits.
  const answer = dig(core.ns, 'slow.test');
  for (let i = 0; i < 100 && !core.world.queries().some((q) => q.name === 'slow.test'); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(
    core.world.queries().some((q) => q.name === 'slow.test'),
    'the lookup was in flight when the reload came',
  );
  const before = (await core.gateway.settledAudit()).filter((e) => e.event === 'reload').length;
  writeFileSync(core.allowlistPath, 'allowed.test\n');
  await core.gateway.waitForAudit(
    () =>
      reloads()
        .slice(before)
        .some((e) => e.ok === true && e.rules === 1),
    5000,
  );
  const r = await answer;
  t.same(r.answers, [], `no address for a name no longer allowed (${r.status})`);
  t.not(r.status, 'NOERROR', 'answered as denied, not NOERROR');
  const line = await core.gateway.waitForAudit((e) => e.event === 'dns' && e.name === 'slow.test');
  t.match(line, { decision: 'deny' }, 'the audit line says deny');
});

t.test('the resolver does not hand a late answer to the firewall once its name is no longer allowed', async (t) => {
  let allowed = true;
  const fed: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const upstream = { resolveA: async () => (await gate, { rcode: 0, ips: ['203.0.113.10'], ttl: 60 }) } as unknown as UpstreamClient;
  const resolver = new Resolver(upstream, {
    onResolved: async (name) => void fed.push(name),
    allowed: () => allowed,
  } as ConstructorParameters<typeof Resolver>[1]);
  const lookup = resolver.lookup('slow.test');
  allowed = false; // the reload lands while the upstream is asked
  release();
  const r = await lookup;
  t.not(r.status, 'ok', `the late answer is not served (${r.status})`);
  t.same(fed, [], 'and its address never reaches the allow set');
});

t.test('a query whose label holds a dot is refused, not read as another name', async (t) => {
  for (const name of ['allowed\\.test', 'x.wild\\.test', 'evil\\.allowed.test']) {
    const before = core.world.queries().length;
    const r = await core.ns.run('dig', ['@127.0.0.1', name, 'A', '+tries=1', '+time=3'], { reject: false });
    t.match(r.stdout, /status: FORMERR/, `${name}: FORMERR`);
    t.notMatch(r.stdout + r.stderr, /mismatch/, `${name}: never answered for another question`);
    t.same(
      core.world
        .queries()
        .slice(before)
        .map((q) => q.name),
      [],
      `${name}: nothing asked upstream`,
    );
  }
  t.match((await dig(core.ns, 'allowed.test')).answers, ['203.0.113.10'], 'ordinary names still resolve');
});
