// Operator experience (issue 15), through the real binary: an error is one line that says what is wrong
// and what to do (no usage dump), "--help" is the command's own only before "--", and the allowlist
// watcher reloads once per change of content. No Docker: the docker client is pointed at nothing.
import t from 'tap';
import { execa } from 'execa';
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import { watchFile } from '../proxy/watch-file.js';
import { editAllowlistFile } from '../image/project.js';

const tmp = tempDir();
t.teardown(tmp.remove);
const project = join(tmp.path, 'project');
mkdirSync(project);
const run = (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [CLI, ...args], {
    reject: false,
    cwd: project,
    timeout: 60_000,
    env: {
      CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'),
      CODEX_EGRESS_DOCKER: join(tmp.path, 'no-docker'),
      OPENAI_ALLOWED_DOMAINS: '',
      NO_COLOR: '1',
      ...env,
    },
  });
const lines = (s: string) => s.split('\n').filter((l) => l !== '');

t.test('an error is one line: what is wrong, what to do; no usage text after it', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['allow', '*.com'], 2, /^codex-egress allow: invalid rule "\*\.com": "com" is a public suffix; name a domain under it$/],
    [
      ['allow', 'bad..name', 'http://x.com/'],
      2,
      /^codex-egress allow: invalid rules "bad\.\.name" is not a valid host name; "http:\/\/x\.com\/" looks like a URL/,
    ],
    [['allow'], 2, /^codex-egress allow: no rule given \(see "codex-egress allow --help"\)$/],
    [['up', '--bogus'], 2, /^codex-egress up: Unknown option '--bogus'.*\(see "codex-egress up --help"\)$/],
    [['frobnicate'], 2, /^codex-egress: unknown command "frobnicate" \(see "codex-egress --help"\)$/],
    [['logs', '--since', 'soon-ish'], 2, /^codex-egress logs: --since must be a duration/],
    [['status', '--workdir', '/'], 2, /^codex-egress status: refusing to use \//],
    // Docker missing: a failure (1), said in one line with the fix.
    [['down'], 1, /^codex-egress down: the docker command was not found: install Docker/],
  ];
  for (const [args, code, why] of cases) {
    const r = await run(args);
    t.equal(r.exitCode, code, `${args.join(' ')}: exit ${code}`);
    t.equal(lines(r.stderr).length, 1, `${args.join(' ')}: one line (${JSON.stringify(r.stderr)})`);
    t.match(r.stderr.trim(), why, args.join(' '));
    t.notMatch(r.stderr + r.stdout, /Usage:/, `${args.join(' ')}: no usage text`);
    t.notMatch(r.stderr, /^\s+at /m, 'no stack trace');
  }
  const quoted = await run(['allow', '*.com']);
  t.equal(quoted.stderr.split('"*.com"').length - 1, 1, 'the rule is quoted once');
  const help = await run(['allow', '--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, /^Usage: codex-egress allow/, '--help still shows the usage');
});

t.test('up -- --help: the --help after "--" is for Codex, not for up', async (t) => {
  // Parsed as up's own options (a bad workdir, refused) instead of printing up's usage.
  const r = await run(['up', '--workdir', '/', '--', '--help']);
  t.notMatch(r.stdout, /Usage: codex-egress up/, 'up did not print its own help');
  t.equal(r.exitCode, 2);
  t.match(r.stderr, /refusing to use \//, 'up went on to its own checks');
  const own = await run(['up', '--help', '--', 'x']);
  t.equal(own.exitCode, 0);
  t.match(own.stdout, /^Usage: codex-egress up/, '--help before "--" is up\'s own');
  const exec = await run(['exec', '--workdir', '/', 'prompt', '--', '-h']);
  t.notMatch(exec.stdout, /Usage:/, 'exec -- -h: the same');
});

t.test('the allowlist watcher: one call per change of content, however it arrives', async (t) => {
  const dir = join(tmp.path, 'watch');
  mkdirSync(dir);
  const file = join(dir, 'allowed_domains.txt');
  writeFileSync(file, 'a.example\n');
  let calls = 0;
  // A fast poll (100 ms) so the watcher and the poll both see each change.
  const watch = watchFile(file, () => calls++, { pollMs: 100, debounceMs: 50 });
  t.teardown(watch.stop);
  const settle = () => new Promise((r) => setTimeout(r, 600));
  await settle();
  t.equal(calls, 0, 'nothing at the start');
  await editAllowlistFile(file, 'allow', ['b.example']); // an atomic replace (rename over it)
  await settle();
  t.equal(calls, 1, 'an atomic replace: one call');
  writeFileSync(file, 'a.example\nc.example\n'); // in place
  await settle();
  t.equal(calls, 2, 'an edit in place: one call');
  writeFileSync(`${file}.tmp`, 'a.example\nc.example\n');
  renameSync(`${file}.tmp`, file); // the same bytes, a new file
  await settle();
  t.equal(calls, 2, 'the same content written again: no call');
  const before = calls;
  await editAllowlistFile(file, 'allow', ['c.example']); // already there: nothing written
  await settle();
  t.equal(calls, before, 'an allow that changes nothing: no call');
});
