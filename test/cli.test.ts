// The command line: usage errors and configuration errors are clear, exit with documented codes,
// and never start a half-configured gateway. (These runs stop before any socket is opened.)
import t from 'tap';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import { startCore, openTunnel } from './harness/core.js';

const run = (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [CLI, ...args], { reject: false, env: { OPENAI_ALLOWED_DOMAINS: '', ...env }, timeout: 20_000 });
const base = [
  'gateway',
  '--no-firewall',
  '--listen',
  '127.0.0.1',
  '--dns-port',
  '0',
  '--proxy-port',
  '0',
  '--upstream',
  '198.51.100.53',
  '--audit-log',
  '/dev/null',
];

t.test('usage: help, unknown commands and bad flags', async (t) => {
  const help = await run(['--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, /Usage: codex-egress <command>/);
  t.equal((await run([])).exitCode, 2, 'no command');
  const unknown = await run(['frobnicate']);
  t.equal(unknown.exitCode, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const gh = await run(['gateway', '--help']);
  t.equal(gh.exitCode, 0);
  t.match(gh.stdout, /--allowlist FILE/);
  for (const [args, why] of [
    [['gateway', '--bogus'], /Unknown option '--bogus'/],
    [['gateway', '--dns-port', 'abc'], /--dns-port must be a whole number from 0 to 65535, not "abc"/],
    [['gateway', '--proxy-port', '70000'], /--proxy-port must be a whole number/],
    [['gateway', '--idle-timeout=-1'], /--idle-timeout must be a number of seconds/],
    [['gateway', '--idle-timeout', '0'], /--idle-timeout must be a number of seconds greater than 0/],
    [['gateway', '--dns-port'], /argument missing/],
    [['gateway', '--firewall', '--no-firewall'], /contradict/],
  ] as const) {
    const r = await run([...args]);
    t.equal(r.exitCode, 2, args.join(' '));
    t.match(r.stderr, why, args.join(' '));
  }
});

t.test('configuration errors name their source and stop the start', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const file = join(dir.path, 'allowed_domains.txt');
  writeFileSync(file, 'github.com\n\n*.com  # oops\n');
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--allowlist', file], {}, new RegExp(`${file}:3: "\\*\\.com": "com" is a public suffix`)],
    [['--allowlist', join(dir.path, 'none.txt'), '--allow', '10.0.0.1'], {}, /--allow: "10\.0\.0\.1": IP addresses are not allowed/],
    [
      ['--allowlist', join(dir.path, 'none.txt')],
      { OPENAI_ALLOWED_DOMAINS: 'ok.example.com, *' },
      /OPENAI_ALLOWED_DOMAINS: "\*": a bare wildcard/,
    ],
    [
      ['--allowlist', join(dir.path, 'none.txt'), '--upstream', 'dns.example.com'],
      {},
      /upstream "dns\.example\.com" must be an IPv4 address/,
    ],
    [['--allowlist', join(dir.path, 'none.txt'), '--listen', '::'], {}, /listen address must be an IPv4 address/],
  ];
  for (const [args, env, why] of cases) {
    const r = await run([...base, ...args], env);
    t.equal(r.exitCode, 1, args.join(' '));
    t.match(r.stderr, /invalid configuration/);
    t.match(r.stderr, why);
    t.notMatch(r.stderr, /gateway up/, 'nothing started');
  }
});

t.test('SIGTERM stops the gateway gracefully: exit 0, open tunnels closed, log flushed', async (t) => {
  const core = await startCore();
  t.teardown(() => core.close());
  const tunnel = openTunnel(core.ns);
  await tunnel.waitFor(/BANNER/);
  core.gateway.proc.child.kill('SIGTERM');
  const result = await core.gateway.proc.child;
  t.equal(result.exitCode, 0, 'exit code 0');
  await tunnel.waitFor(/TUNNEL CLOSED/);
  const events = core.gateway.audit();
  t.match(
    events.find((e) => e.event === 'tunnel_close'),
    { closed_by: 'shutdown', host: 'allowed.test' },
  );
  t.match(events.at(-1), { event: 'stop', signal: 'SIGTERM' }, 'the stop line is the last one written');
});
