// The appliance commands' surface (up, down, status, …; the gateway command has test/cli.test.ts): --help for each with documented exit codes, usage errors exit 2,
// and the pure helpers of `logs` and `doctor`. No Docker needed.
import t from 'tap';
import { cliInProcess } from './harness/cli.js';
import { parseSince, matches, formatLine, countDecisions } from '../cli/auditlog.js';
import { engineRecentEnough } from '../cli/doctor.js';
import { sinceOption } from '../cli/common.js';
import { parseLine } from '../cli/audit-line.js';

const COMMANDS = ['up', 'exec', 'down', 'status', 'allow', 'deny', 'domains', 'logs', 'verify', 'doctor', 'build'];
/** Run the CLI in this process, with a state directory that does not exist. */
const cli = (args: string[]) => cliInProcess(args, '/nonexistent-state');

t.test('every command has --help with its exit codes', async (t) => {
  const top = await cli(['--help']);
  for (const c of COMMANDS) {
    t.match(top.stdout, new RegExp(`^  ${c} `, 'm'), `listed: ${c}`);
    const r = await cli([c, '--help']);
    t.equal(r.code, 0, `${c} --help exits 0`);
    t.match(r.stdout, new RegExp(`^Usage: codex-egress ${c}`), `${c} usage`);
    t.match(r.stdout, /Exit codes:/, `${c} documents its exit codes`);
  }
});

t.test('usage errors exit 2', async (t) => {
  t.equal((await cli(['up', '--bogus'])).code, 2);
  t.equal((await cli(['allow'])).code, 2, 'allow without a rule');
  t.equal((await cli(['exec'])).code, 2, 'exec without a prompt');
  t.equal((await cli(['logs', '--since', 'yesterday-ish'])).code, 2);
  t.equal((await cli(['build', '--only', 'both'])).code, 2);
  t.equal((await cli(['up', '--firewall', '--no-firewall'])).code, 2);
  const root = await cli(['status', '--workdir', '/']);
  t.equal(root.code, 2, 'the workdir may not be /');
  t.match(root.stderr, /refusing to use \//);
});

t.test('logs: --since, --denied, formatting, counters', async (t) => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  t.equal(parseSince('10m', now), now - 600_000);
  t.equal(parseSince('2h', now), now - 7_200_000);
  t.equal(parseSince('2026-01-01T11:00:00Z', now), now - 3_600_000);
  t.throws(() => parseSince('soon', now));
  t.equal(sinceOption(undefined, now), undefined);
  t.equal(sinceOption('90s', now), now - 90_000);
  t.throws(() => sinceOption('soon', now), { name: 'UsageError', message: /--since must be a duration like 10m or 2h.*not "soon"/ });
  /** An event as the CLI reads it back. */
  const read = (e: object) => parseLine(JSON.stringify(e))!;
  const deny = read({
    v: 1,
    time: '2026-01-01T12:00:01.000Z',
    event: 'connect',
    host: 'x.org',
    port: 443,
    decision: 'deny',
    reason: 'not-allowlisted',
    client: '10.0.0.3',
  });
  const allow = read({ ...deny, decision: 'allow', reason: 'allowed', rule: { text: 'x.org', source: 'file' } });
  t.ok(matches(deny, { denied: true }));
  t.notOk(matches(allow, { denied: true }));
  t.ok(matches({ event: 'reload', ok: false }, { denied: true }), 'a rejected reload is shown with --denied');
  t.notOk(matches(deny, { sinceMs: Date.parse('2026-01-01T12:00:02Z') }));
  t.equal(formatLine(deny, false), '2026-01-01 12:00:01Z DENY  connect  x.org:443 not-allowlisted client 10.0.0.3');
  t.match(formatLine(allow, false), /ALLOW connect  x\.org:443 allowed \[x\.org from file\]/);
  t.match(formatLine(deny, true), /\x1b\[31mDENY/, 'colour when asked');
  t.same(countDecisions([JSON.stringify(deny), JSON.stringify(allow), JSON.stringify(deny), 'garbage']), {
    connect: { deny: 2, allow: 1 },
  });
});

t.test('doctor: engine version check', async (t) => {
  t.ok(engineRecentEnough('20.10.24+dfsg1'));
  t.ok(engineRecentEnough('28.2.2'));
  t.notOk(engineRecentEnough('19.03.15'));
  t.notOk(engineRecentEnough('20.9.1'));
});
