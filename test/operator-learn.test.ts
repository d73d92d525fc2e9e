// Learning mode and the everyday reading commands, through the real binary on an audit log written here:
// `suggest` (refused names → the narrowest rules, counts, one accept command; deny wins), risk notes on
// `allow` (warned, not refused; every spelling of a noted host), and `logs -n`. No Docker: the docker
// client is pointed at nothing, so every command runs as with the appliance down.
import t from 'tap';
import { execa } from 'execa';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';
import { risksOf } from '../cli/risks.js';
import { DeniedNames, propose } from '../cli/suggest-rules.js';
import { parseLine } from '../cli/audit-line.js';

const tmp = tempDir();
t.teardown(tmp.remove);
const project = join(tmp.path, 'project');
mkdirSync(project);
const env = {
  CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'),
  CODEX_EGRESS_DOCKER: join(tmp.path, 'no-docker'),
  OPENAI_ALLOWED_DOMAINS: '',
  NO_COLOR: '1',
};
const paths = statePaths(projectFor(project), env);
const run = (args: string[]) => execa(process.execPath, [CLI, ...args], { reject: false, cwd: project, timeout: 60_000, env });

let clock = Date.parse('2026-03-01T10:00:00Z');
const at = () => new Date((clock += 1000)).toISOString();
const dns = (name: string, reason = 'not-allowlisted', client = '10.9.0.3') => ({
  v: 1,
  time: at(),
  event: 'dns',
  client,
  name,
  qtype: 'A',
  decision: 'deny',
  reason,
  rcode: 'NXDOMAIN',
  answers: [],
});
const connect = (host: string, port: number, reason = 'not-allowlisted') => ({
  v: 1,
  time: at(),
  event: 'connect',
  client: '10.9.0.3',
  host,
  port,
  decision: 'deny',
  reason,
  status: 403,
});
const EVENTS = [
  dns('a.cdn.example.com'),
  dns('b.cdn.example.com'),
  dns('C.CDN.Example.COM.'), // another spelling of a third name under the same parent
  dns('pypi.org'),
  dns('PyPI.org.'), // the same name, another spelling: one rule, counted together
  {
    v: 1,
    time: at(),
    event: 'repeat',
    of: 'dns',
    client: '10.9.0.3',
    name: 'pypi.org',
    qtype: 'A',
    decision: 'deny',
    reason: 'not-allowlisted',
    rcode: 'NXDOMAIN',
    answers: [],
    count: 5,
    first: at(),
    last: at(),
  },
  dns('files.pythonhosted.org', 'not-allowlisted', '10.9.0.4'),
  dns('bad.example.org', 'denied-by-rule'), // a deny rule refused it: never proposed
  dns('github.com'), // allowed since (in the file below): not proposed
  dns('later.example.org'), // denied since (a deny rule in the file): not proposed
  dns('x.evil-one.test'),
  dns('y.evil-two.test'), // two sites: two rules, never one wide one
  dns('co.uk'), // a public suffix: nothing narrow covers it
  connect('10.0.0.1', 443, 'ip-literal'), // not a name
  connect('api.example.net', 8443, 'port-not-allowed'), // allowed on 443 only: the port is proposed
  dns('raw.githubusercontent.com'),
  {
    v: 1,
    time: at(),
    event: 'suppressed',
    of: 'dns',
    client: '10.9.0.5',
    decision: 'deny',
    count: 900,
    sample: ['flood1.example.io'],
    first: at(),
    last: at(),
  },
  { v: 1, time: at(), event: 'connect', client: '10.9.0.3', host: 'allowed.example.net', port: 443, decision: 'allow', reason: 'allowed' },
  { v: 1, time: at(), event: 'reload', ok: true, rules: 3, added: [], removed: [] },
  {
    v: 1,
    time: at(),
    event: 'tunnel_close',
    client: '10.9.0.3',
    host: 'small.example.net',
    port: 443,
    ip: '203.0.113.9',
    bytes_up: 100,
    bytes_down: 100,
    ms: 5,
    closed_by: 'client',
  },
  {
    v: 1,
    time: at(),
    event: 'tunnel_close',
    client: '10.9.0.3',
    host: 'allowed.example.net',
    port: 443,
    ip: '203.0.113.8',
    bytes_up: 1000,
    bytes_down: 2000000,
    ms: 5,
    closed_by: 'client',
  },
  {
    v: 1,
    time: at(),
    event: 'tunnel_close',
    client: '10.9.0.3',
    host: 'allowed.example.net',
    port: 443,
    ip: '203.0.113.8',
    bytes_up: 24,
    bytes_down: 0,
    ms: 5,
    closed_by: 'upstream',
  },
];

t.before(() => {
  mkdirSync(paths.logDir, { recursive: true });
  writeFileSync(paths.auditLog, `${EVENTS.map((e) => JSON.stringify(e)).join('\n')}\nnot json\n`);
  writeFileSync(paths.allowlist, '# codex-egress allowlist\ngithub.com\napi.example.net\n!bad.example.org\n!later.example.org\n');
});

t.test('suggest: the narrowest rules, with counts and clients, and one command to accept them', async (t) => {
  const r = await run(['suggest', '--json']);
  t.equal(r.exitCode, 0, r.stderr);
  const s = JSON.parse(r.stdout) as {
    proposals: Array<{ rule: string; count: number; names: string[]; clients: string[]; risks: unknown[] }>;
    command: string;
  };
  const byRule = Object.fromEntries(s.proposals.map((p) => [p.rule, p]));
  t.same(
    Object.keys(byRule).sort(),
    [
      '*.cdn.example.com',
      'api.example.net:8443',
      'files.pythonhosted.org',
      'flood1.example.io',
      'pypi.org',
      'raw.githubusercontent.com',
      'x.evil-one.test',
      'y.evil-two.test',
    ].sort(),
  );
  t.match(
    byRule['*.cdn.example.com'],
    { count: 3, names: ['a.cdn.example.com', 'b.cdn.example.com', 'c.cdn.example.com'] },
    'three names under one parent: one wildcard',
  );
  t.match(byRule['pypi.org'], { count: 7 }, 'spellings and repeat counts add up');
  t.same(byRule['files.pythonhosted.org']!.clients, ['10.9.0.4'], 'the client that asked');
  t.equal(s.proposals[0]!.rule, 'pypi.org', 'most asked first');
  t.equal(byRule['raw.githubusercontent.com']!.risks.length, 1, 'a risk note on a proposal');
  t.notOk(
    s.proposals.some(
      (p) =>
        /bad\.example\.org|later\.example\.org|github\.com$|co\.uk|10\.0\.0\.1|^\*\.test|evil/.test(p.rule) && !/^[xy]\.evil/.test(p.rule),
    ),
    'no denied, allowed, suffix or address rule',
  );
  t.match(s.command, /^codex-egress allow pypi\.org .*'\*\.cdn\.example\.com'/, 'a wildcard is quoted for the shell');
  const human = await run(['suggest']);
  t.match(human.stdout, /^RULE +COUNT +NAMES/m);
  t.match(human.stdout, /^pypi\.org +7 +pypi\.org \(10\.9\.0\.3\)$/m);
  t.match(human.stdout, /note: +opens raw\.githubusercontent\.com/);
  t.match(human.stdout, /^accept: codex-egress allow /m);
  // Accept two lines, then they are no longer proposed.
  const accept = await run(['allow', 'pypi.org', '*.cdn.example.com']);
  t.equal(accept.exitCode, 0, accept.stderr);
  const again = JSON.parse((await run(['suggest', '--json'])).stdout) as { proposals: Array<{ rule: string }> };
  t.notOk(
    again.proposals.some((p) => p.rule === 'pypi.org' || p.rule === '*.cdn.example.com'),
    'accepted rules are no longer proposed',
  );
  t.match((await run(['suggest', '--json', '--min-count', '2'])).stdout, /"proposals": \[\]/, '--min-count');
  const none = await run(['suggest', '--since', '2099-01-01T00:00:00Z']);
  t.equal(none.exitCode, 0);
  t.match(none.stderr, /no refused names to learn from/);
  t.equal((await run(['suggest', '--min-count', 'x'])).exitCode, 2);
});

t.test('suggest, the pure part: never wider than a site, a parent asked for too gives ".parent"', async (t) => {
  const d = new DeniedNames();
  for (const name of ['example.com', 'a.example.com', 'b.example.com', 'q.github.io', 'r.github.io', 's.github.io'])
    d.add(parseLine(JSON.stringify(dns(name)))!);
  const rules = propose(d.asked.values())
    .map((p) => p.rule)
    .sort();
  t.same(rules, ['.example.com', 'q.github.io', 'r.github.io', 's.github.io'], 'github.io is a public suffix: each site its own rule');
  t.same(
    propose(d.asked.values(), () => false, 10)
      .map((p) => p.rule)
      .sort(),
    ['a.example.com', 'b.example.com', 'example.com', 'q.github.io', 'r.github.io', 's.github.io'],
    'below --collapse: exact rules',
  );
});

t.test("allow: a note (not a refusal) for a host that carries anyone's content or tunnels", async (t) => {
  for (const [rule, host] of [
    ['raw.githubusercontent.com', 'raw.githubusercontent.com'],
    ['RAW.GitHubUserContent.com.', 'raw.githubusercontent.com'],
    ['raw.githubusercontent.com:8443', 'raw.githubusercontent.com'],
    ['mybucket.s3.amazonaws.com', '.s3.amazonaws.com'],
    ['x.ngrok.io', '.ngrok.io'],
    ['.pastebin.com', '.pastebin.com'],
    ['*.pastebin.com', '.pastebin.com'],
    ['dns.google', 'dns.google'],
    ['x.cloudflare-dns.com', '.cloudflare-dns.com'],
    ['foo.workers.dev', '*.workers.dev'],
  ])
    t.same(
      risksOf(rule!).map((n) => n.host),
      [host],
      rule!,
    );
  for (const rule of [
    'github.com',
    'api.openai.com',
    '!raw.githubusercontent.com',
    'raw.githubusercontent.com.example.org',
    'notpastebin.com',
    'dns.google.example.org',
  ]) {
    t.same(risksOf(rule), [], `${rule}: no note`);
  }
  const r = await run(['allow', 'RAW.GitHubUserContent.com']);
  t.equal(r.exitCode, 0, 'allowed as asked');
  t.match(r.stderr, /^codex-egress allow: note: raw\.githubusercontent\.com serves any file of any public GitHub repository/m);
  t.match(readFileSync(paths.allowlist, 'utf8'), /^RAW\.GitHubUserContent\.com$/m, 'and written');
  const j = JSON.parse((await run(['allow', '--json', 'x.ngrok.io'])).stdout) as { risks: Array<{ host: string }> };
  t.match(j.risks, [{ host: '.ngrok.io' }]);
  const plain = await run(['allow', 'example.org']);
  t.notMatch(plain.stderr, /note:/, 'no note for an ordinary host');
  const deny = await run(['deny', 'raw.githubusercontent.com']);
  t.notMatch(deny.stderr, /note:/, 'none for deny');
});

t.test('logs -n N: the last N matching lines', async (t) => {
  const all = (await run(['logs'])).stdout.trim().split('\n');
  const last2 = await run(['logs', '-n', '2']);
  t.equal(last2.exitCode, 0);
  t.same(last2.stdout.trim().split('\n'), all.slice(-2));
  t.same((await run(['logs', '--tail', '3'])).stdout.trim().split('\n'), all.slice(-3), '--tail');
  t.same((await run(['logs', '-n', '4'])).stdout.trim().split('\n'), all.slice(-4), 'in order, whatever the count');
  t.equal((await run(['logs', '-n', '0'])).stdout, '', '-n 0: nothing');
  t.same((await run(['logs', '-n', '500'])).stdout.trim().split('\n'), all, 'more than there are: all');
  const denied = (await run(['logs', '--denied', '-n', '1'])).stdout.trim();
  t.match(denied, /flood .*flood1\.example\.io/, '--denied -n 1: the last denial');
  t.equal((await run(['logs', '-n', 'many'])).exitCode, 2);
});

t.test('logs summary: top denied names with clients, top allowed hosts by bytes', async (t) => {
  const r = await run(['logs', 'summary', '--json']);
  t.equal(r.exitCode, 0, r.stderr);
  const s = JSON.parse(r.stdout) as {
    denied: Array<{ name: string; count: number; clients: string[] }>;
    allowed: Array<{ host: string; bytes_up: number; bytes_down: number; connections: number }>;
  };
  t.match(
    s.denied[0],
    { name: 'pypi.org', count: 7, clients: ['10.9.0.3'] },
    'the most refused name first, spellings and repeats added up',
  );
  t.ok(
    s.denied.some((d) => d.name === 'bad.example.org'),
    "every refusal counts here, a deny rule's too",
  );
  t.match(
    s.allowed,
    [{ host: 'allowed.example.net', bytes_up: 1024, bytes_down: 2000000, connections: 2 }, { host: 'small.example.net' }],
    'by bytes, both directions',
  );
  const human = await run(['logs', 'summary', '--top', '1']);
  t.match(
    human.stdout,
    /^top denied names:\n +7  pypi\.org  \(10\.9\.0\.3\)\ntop allowed hosts by bytes:\n +1\.9 MiB  allowed\.example\.net:443  \(up 1\.0 KiB, down 1\.9 MiB, 2 connections\)$/,
  );
  const later = JSON.parse((await run(['logs', 'summary', '--json', '--since', '2099-01-01T00:00:00Z'])).stdout) as {
    denied: unknown[];
    allowed: unknown[];
  };
  t.same(later, { denied: [], allowed: [] }, '--since: a window');
  t.equal((await run(['logs', 'summary', '--top', '0'])).exitCode, 2);
});
