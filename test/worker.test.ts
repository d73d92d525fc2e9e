// Worker mode's input checks (image/worker.ts): the repository URL, ref and directory are user input
// that must never become a git option, a command, a local path or a way out of the workdir; the host
// check is the gateway's own decide(); the sandbox's answer is accepted only as a commit id. And the
// subnet choice (image/subnet.ts), the pure part.
import t from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  parseRepoUrl,
  repoDirName,
  checkRef,
  checkCommit,
  allowlistFromEffective,
  repoAllowed,
  CLONE_SCRIPT,
  cloneEnv,
} from '../image/worker.js';
import { overlaps, subnetCandidates, parseCidr } from '../image/subnet.js';
import { workerPlan } from '../cli/worker.js';

const BAD = { code: 'ERR_WORKER_INPUT' };

t.test('repository URLs: https/http with a host name only', async (t) => {
  const ok = parseRepoUrl('https://Git.Example.org/team/tool.git');
  t.same(ok, { url: 'https://git.example.org/team/tool.git', host: 'git.example.org', port: 443, via: 'connect' });
  t.same(parseRepoUrl('http://git.example.org:8080/x'), {
    url: 'http://git.example.org:8080/x',
    host: 'git.example.org',
    port: 8080,
    via: 'http',
  });
  t.equal(parseRepoUrl('https://git.example.org:443/x').port, 443);
  for (const bad of [
    '--upload-pack=touch /tmp/pwned',
    '-c',
    '-ccore.sshCommand=sh',
    '--config=x',
    'ext::sh -c touch% /tmp/pwned',
    'file:///etc',
    '/etc/passwd',
    '../other',
    'ssh://git@git.example.org/x.git',
    'git@git.example.org:x.git',
    'git://git.example.org/x',
    'fd::3',
    'HTTPS://git.example.org/a b',
    'https://user:token@git.example.org/x.git',
    'https://token@git.example.org/x.git',
    'https://198.51.100.7/x.git',
    'https://[2001:db8::1]/x.git',
    'https://git.example.org/',
    'https://git.example.org',
    'https://git.example.org/x?upload-pack=1',
    'https://git.example.org/x#frag',
    'https://git.example.org/x\n--upload-pack=sh',
    'https://git.example.org/x\u0000',
    'https:\\\\git.example.org\\x',
    '',
  ]) {
    t.throws(() => parseRepoUrl(bad), BAD, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('the clone directory: one safe component inside the workdir', async (t) => {
  const repo = parseRepoUrl('https://git.example.org/team/Tool.git');
  t.equal(repoDirName(undefined, repo), 'Tool', 'derived from the URL, .git removed');
  t.equal(repoDirName(undefined, parseRepoUrl('https://git.example.org/a/my%20repo')), 'my-repo');
  t.equal(repoDirName(undefined, parseRepoUrl('https://git.example.org/a/..%2F..%2Fetc')), 'etc', 'an encoded ../ in the URL cannot climb');
  t.throws(() => repoDirName(undefined, parseRepoUrl('https://git.example.org/a/.git')), BAD, 'nothing left: --repo-dir needed');
  t.equal(repoDirName('work_1.x', repo), 'work_1.x');
  for (const bad of ['..', '.', '.git', '../x', '/abs', 'a/b', '-rf', '--upload-pack=x', '', 'a\nb', 'x'.repeat(101), '.hidden', 'a\\b']) {
    t.throws(() => repoDirName(bad, repo), BAD, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('refs: branch, tag or commit, never an option or revision syntax', async (t) => {
  for (const ok of ['main', 'v1.2.3', 'feature/x-y', 'release_2', 'a1b2c3d', 'HEAD']) t.equal(checkRef(ok), ok);
  for (const bad of [
    '-x',
    '--upload-pack=sh',
    '--output=/tmp/x',
    '-c',
    '/main',
    '.x',
    'a..b',
    'a//b',
    'a/.b',
    'x.lock',
    'x/',
    'x.',
    'HEAD~1',
    'main^',
    'a:b',
    '@{-1}',
    'a b',
    'x\n-c',
    '',
    'x'.repeat(201),
  ]) {
    t.throws(() => checkRef(bad), BAD, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test("the sandbox's commit answer: hex only", async (t) => {
  t.equal(checkCommit('0123456789abcdef0123456789abcdef01234567\n'), '0123456789abcdef0123456789abcdef01234567');
  t.equal(checkCommit('a'.repeat(64)), 'a'.repeat(64), 'sha256 repositories');
  for (const bad of ['', 'deadbeef', '0123456789abcdef0123456789abcdef0123456g', `${'a'.repeat(40)}\n\u001b[31m`, '$(id)'])
    t.equal(checkCommit(bad), undefined, `refused ${JSON.stringify(bad)}`);
});

t.test('the host check is the allowlist decide(): names the rule to add', async (t) => {
  const al = allowlistFromEffective({
    rules: [
      { rule: '*.example.org', source: 'flag', origin: '--allow' },
      { rule: 'bad.example.org', source: 'file', origin: 'allowed_domains.txt:3' },
      { rule: 'alt.example.net:8443', source: 'flag', origin: '--allow' },
    ],
  });
  // (the second is an allow rule too; a deny rule is "!name")
  t.ok(repoAllowed(parseRepoUrl('https://git.example.org/x'), al).ok, 'subdomain rule');
  t.ok(repoAllowed(parseRepoUrl('https://GIT.EXAMPLE.ORG./x'), al).ok, 'mixed case and a trailing dot: the same host');
  const apex = repoAllowed(parseRepoUrl('https://example.org/x'), al);
  t.notOk(apex.ok, '*.example.org does not allow the apex');
  if (!apex.ok) t.match(apex.message, 'Allow it with "codex-egress allow example.org"');
  const port = repoAllowed(parseRepoUrl('https://git.example.org:8443/x'), al);
  t.notOk(port.ok, 'another port is another rule');
  if (!port.ok) t.match(port.message, /not on port 8443[^]*codex-egress allow git\.example\.org:8443/);
  t.ok(repoAllowed(parseRepoUrl('https://alt.example.net:8443/x'), al).ok, 'a port rule');
  t.notOk(
    repoAllowed(
      parseRepoUrl('http://git.example.org/x'),
      allowlistFromEffective({ rules: [{ rule: 'git.example.net', source: 'flag', origin: '--allow' }] }),
    ).ok,
  );
  const denied = repoAllowed(
    parseRepoUrl('https://evil.example.org/x'),
    allowlistFromEffective({
      rules: [
        { rule: '*.example.org', source: 'flag', origin: '--allow' },
        { rule: '!evil.example.org', source: 'file', origin: 'allowed_domains.txt:2' },
      ],
    }),
  );
  t.notOk(denied.ok, 'deny wins');
  if (!denied.ok) t.match(denied.message, /denied by the rule "!evil\.example\.org" \(allowed_domains\.txt:2\)/);
  t.throws(() => allowlistFromEffective({}), /no rules list/, 'a malformed effective allowlist is an error, not an empty allow');
  t.notOk(
    repoAllowed(parseRepoUrl('https://git.example.org/x'), allowlistFromEffective({ rules: [{ rule: 42 }, null, { rule: '' }] })).ok,
    'garbage rules allow nothing',
  );
});

t.test('workerPlan: usage errors, the path inside the workdir', async (t) => {
  t.equal(workerPlan({}, '/w'), undefined);
  t.throws(() => workerPlan({ ref: 'main' }, '/w'), { name: 'UsageError' }, '--ref without --repo');
  t.throws(() => workerPlan({ repo: '--upload-pack=x' }, '/w'), { name: 'UsageError' });
  t.same(workerPlan({ repo: 'https://git.example.org/a/b.git', ref: 'v1' }, '/w'), {
    repo: parseRepoUrl('https://git.example.org/a/b.git'),
    dir: 'b',
    path: '/w/b',
    ref: 'v1',
  });
});

t.test('the clone script takes URL, ref and directory only as quoted positional parameters', async (t) => {
  const body = CLONE_SCRIPT.split('\n').slice(2).join('\n');
  t.notMatch(body, /\$[0-9@*]/, 'the positional parameters are read once, into variables');
  t.notMatch(body, /\beval\b|\$\(\s*\$/, 'nothing is evaluated');
  t.match(CLONE_SCRIPT, /git clone --quiet --no-checkout -- "\$url" "\$dir"/, 'clone: -- before the URL');
  t.match(CLONE_SCRIPT, /fetch --quiet --tags --force --end-of-options "\$url"/, 'fetch: --end-of-options before the URL');
  for (const m of CLONE_SCRIPT.matchAll(/rev-parse[^|]*"\$ref/g))
    t.match(m[0], /--end-of-options/, 'rev-parse: --end-of-options before the ref');
});

t.test('the clone script run for real (local repository, file:// allowed for this test only)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'codex-egress-clone-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const g = (cwd: string, ...args: string[]) =>
    execFileSync('git', args, {
      cwd,
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' },
    })
      .toString()
      .trim();
  mkdirSync(join(dir, 'src'));
  g(join(dir, 'src'), 'init', '-q', '-b', 'main');
  writeFileSync(join(dir, 'src', 'f'), '1');
  g(join(dir, 'src'), 'add', '.');
  g(join(dir, 'src'), 'commit', '-q', '-m', 'one');
  g(join(dir, 'src'), 'tag', 'v1');
  const v1 = g(join(dir, 'src'), 'rev-parse', 'HEAD');
  writeFileSync(join(dir, 'src', 'f'), '2');
  g(join(dir, 'src'), 'commit', '-q', '-am', 'two');
  const work = join(dir, 'work');
  mkdirSync(work);
  const url = `file://${join(dir, 'src')}`;
  const run = (ref: string, d: string) =>
    spawnSync('sh', ['-c', CLONE_SCRIPT, 'sh', url, ref, d], {
      cwd: work,
      env: { ...process.env, ...cloneEnv(join(work, d)), GIT_ALLOW_PROTOCOL: 'file' },
    });
  const r = run('v1', 'clone');
  t.equal(r.status, 0, String(r.stderr));
  t.equal(checkCommit(String(r.stdout).split('\n').filter(Boolean).at(-1)!.slice(7)), v1, 'the tag checked out, its commit reported');
  t.equal(readFileSync(join(work, 'clone', 'f'), 'utf8'), '1');
  // Even without the CLI's checks, an option-looking ref is a ref that does not exist, never an option.
  const marker = join(dir, 'pwned');
  for (const ref of [`--output=${marker}`, `--upload-pack=touch ${marker}`, '-h']) {
    const x = run(ref, 'clone');
    t.equal(x.status, 66, `ref ${ref}: not found`);
  }
  t.notOk(existsSync(marker), 'no option took effect');
  writeFileSync(join(work, 'plain'), 'x');
  t.equal(run('', 'plain').status, 65, 'a directory that is not a clone is left alone');
  const ext = spawnSync('sh', ['-c', CLONE_SCRIPT, 'sh', `ext::sh -c touch% ${marker}`, '', 'e'], {
    cwd: work,
    env: { ...process.env, ...cloneEnv(join(work, 'e')) },
  });
  t.not(ext.status, 0, 'ext:: refused by GIT_ALLOW_PROTOCOL');
  const local = spawnSync('sh', ['-c', CLONE_SCRIPT, 'sh', url, '', 'local'], {
    cwd: work,
    env: { ...process.env, ...cloneEnv(join(work, 'local')) },
  });
  t.not(local.status, 0, 'file:// (allowed by git by default) refused by GIT_ALLOW_PROTOCOL');
  t.notOk(existsSync(join(work, 'local', 'f')), 'nothing cloned from a local path');
  t.notOk(existsSync(marker), 'the ext:: command never ran');
});

t.test('subnets: overlap, candidates skip what is in use', async (t) => {
  t.same(parseCidr('10.213.7.9/24'), [((10 << 24) | (213 << 16) | (7 << 8)) >>> 0, 24]);
  t.equal(parseCidr('fd00::/64'), undefined);
  t.ok(overlaps('10.213.7.0/24', '10.213.7.0/24'));
  t.ok(overlaps('10.213.7.0/24', '10.0.0.0/8'), 'inside a wider network');
  t.ok(overlaps('10.213.0.0/16', '10.213.7.128/25'));
  t.notOk(overlaps('10.213.7.0/24', '10.213.8.0/24'));
  t.notOk(overlaps('10.213.7.0/24', 'fd00::/64'));
  const c = subnetCandidates('10.213.7.0/24', ['10.213.7.0/24', '10.213.8.0/25', '172.17.0.0/16']);
  t.equal(c[0], '10.213.9.0/24', 'the derived one and an overlapped one are skipped');
  t.notOk(c.includes('10.213.7.0/24') || c.includes('10.213.8.0/24'));
  t.equal(subnetCandidates('10.213.255.0/24', [])[1], '10.213.0.0/24', 'wraps around');
  t.equal(subnetCandidates('10.213.7.0/24', ['10.0.0.0/8']).length, 0, 'nothing free');
  t.equal(subnetCandidates('10.213.7.0/24', []).length, 64, 'bounded');
});
