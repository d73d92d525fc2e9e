// `status` for people (cli/status-view.ts): firewall on/off, interface, ports, allow-set fill, drops by
// rule, Codex sandbox mode, uptime. Pure: a report in, lines out.
import t from 'tap';
import { statusLines, duration, type StatusReport } from '../cli/status-view.js';

const base: StatusReport = {
  project: 'codex-egress-p-1',
  workdir: '/w/p',
  running: true,
  healthy: true,
  containers: [{ name: 'g', status: 'running', health: 'healthy' }],
  networks: ['n'],
  health: {
    healthy: true,
    firewall: {
      up: true,
      interface: 'eth0',
      ports: [443, 80],
      set: { name: 'codex-egress-allow', entries: 12, size: 65536 },
      drops: { 'out-not-allowed': { packets: 3, bytes: 180 }, 'in-other': { packets: 0, bytes: 0 } },
    },
  },
  allowlist: { file: '/s/allowed_domains.txt', effective: '/s/e.json', rules: 5 },
  auditLog: '/s/logs/audit.jsonl',
  codexHome: '/s/codex-home',
  runs: '/s/runs',
  codexSandbox: { mode: 'off', user: '1000:1000' },
  decisions: { dns: { allow: 10, deny: 2 } },
  startedAt: '2026-03-01T10:00:00.000Z',
};
const now = Date.parse('2026-03-01T12:05:30Z');

t.test('running with the firewall on', async (t) => {
  const out = statusLines(base, now).join('\n');
  t.match(out, /^state      running, healthy · up 2 h 5 min$/m);
  t.match(out, /^firewall   on, verified · interface eth0 · ports 443, 80 · allow set 12\/65536 \(0\.0% full\)$/m);
  t.match(out, /^drops      out-not-allowed 3 packets since the gateway started$/m, 'only rules that dropped something');
  t.match(out, /^sandbox    Codex's own sandbox OFF/m);
  t.match(out, /^allowlist  5 effective rules/m);
  t.match(out, /^decisions  dns allow 10\/deny 2$/m);
});

t.test('firewall off, not in place, not running; hostile strings escaped', async (t) => {
  const off = statusLines({ ...base, health: { healthy: true, firewall: { up: false, disabled: true } } }, now).join('\n');
  t.match(off, /^firewall   OFF \(--no-firewall\): the kernel does not enforce the allowlist$/m);
  t.notMatch(off, /^drops/m);
  const broken = statusLines(
    { ...base, healthy: false, health: { healthy: false, firewall: { up: false, problem: 'rules missing', drops: {} } } },
    now,
  ).join('\n');
  t.match(broken, /^state      running, NOT healthy/m);
  t.match(broken, /^firewall   NOT in place: rules missing$/m);
  t.match(broken, /^drops      none since/m);
  const down = statusLines({ ...base, running: false, healthy: false, health: null, codexSandbox: null }, now).join('\n');
  t.match(down, /^state      not running$/m, 'no uptime when not running');
  t.notMatch(down, /^firewall/m);
  const evil = statusLines({ ...base, health: { firewall: { up: true, interface: 'eth0\x1b[2J\n', ports: [] } } }, now).join('\n');
  t.notMatch(evil, /\x1b/, 'no escape sequence reaches the terminal');
  t.match(evil, /ports none/);
});

t.test('durations', async (t) => {
  t.equal(duration(42_000), '42 s');
  t.equal(duration(5 * 60_000), '5 min');
  t.equal(duration(26 * 3600_000), '1 d 2 h');
  t.equal(duration(-5), '0 s');
});
