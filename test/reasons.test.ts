// The one list of reasons: what decide() can say, what a revoked connection is answered. No I/O.
import t from 'tap';
import { DENY_REASONS, DENY_STATUS, POLICY_DENY_REASONS, CLOSED_BY } from '../proxy/reasons.js';
import { revokedRefusal } from '../proxy/http/admit.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import { Allowlist } from '../proxy/policy/allowlist.js';
import type { Connection } from '../proxy/http/registry.js';

t.test('decide() only ever gives a policy reason (never policy-reload or a check reason)', async (t) => {
  const r = parseRuleList(['allowed.test', '!bad.allowed.test', 'port.test:8443'], 'flag', '--allow');
  if (!r.ok) throw new Error(r.errors.join());
  const a = new Allowlist(r.rules);
  const seen = new Set<string>();
  for (const h of ['allowed.test', 'bad.allowed.test', 'port.test', 'other.test', '10.0.0.1', '', 'a b', '[::1]']) {
    for (const [via, port] of [
      ['dns', undefined],
      ['connect', 443],
      ['http', 80],
      ['connect', 8443],
    ] as const) {
      const d = a.decide(h, via, port);
      seen.add(d.reason);
      if (!d.allow) t.ok((POLICY_DENY_REASONS as readonly string[]).includes(d.reason), `${h} ${via}: ${d.reason}`);
    }
  }
  t.same([...seen].sort(), ['allowed', ...POLICY_DENY_REASONS].sort(), 'every policy reason is reachable');
});

t.test('every deny reason has a status; the lists have no duplicates', async (t) => {
  for (const r of DENY_REASONS) t.ok(DENY_STATUS[r] >= 400 && DENY_STATUS[r] < 600, r);
  t.equal(new Set(DENY_REASONS).size, DENY_REASONS.length);
  t.equal(new Set(CLOSED_BY).size, CLOSED_BY.length);
});

t.test('a revoked connection is answered with why: a reload (403) or the gateway stopping (503)', async (t) => {
  const conn = (revoked: Connection['revoked']): Connection => ({
    kind: 'request',
    client: '',
    host: 'a.test',
    port: 80,
    via: 'http',
    revoked,
    closed: Promise.resolve(),
  });
  t.match(revokedRefusal(conn('policy-reload')), { status: 403, reason: 'policy-reload', detail: /allowlist changed/ });
  t.match(revokedRefusal(conn('shutdown')), { status: 503, reason: 'shutdown', detail: /stopping/ });
});
