// The runner (issue 14) end to end with a real Docker engine, in one build to spare the shared machine:
// four concurrent `exec` runs whose derived /24s are the same one (each must get a free /24 of its own),
// then worker mode: a git repository served over HTTPS in the fake internet on an allowed name, cloned
// inside the sandbox through the gateway, a ref checked out, run.log/exit.json/summary.md; an update
// of the clone to another ref; a denied repository host failing before anything is cloned; --read-only
// proven read-only by verify from inside, --config, --codex-bin and --shm-size seen from inside.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { mkdirSync, writeFileSync, chownSync, chmodSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './harness/world.js';
import {
  auditWritten,
  BASE_IMAGE,
  withDockerEngine,
  baseImageReady,
  runCli,
  e2eRun,
  docker,
  packFakeCodex,
  startDockerWorld,
  nodeLtsBase,
  E2E_LABEL,
  type DockerWorld,
  withImageLock,
} from './harness/docker.js';
import { projectFor, type Project } from '../image/names.js';

const e2e = e2eRun();
const { id } = e2e;
const ALLOWED = 'allowed.example.org';
const GIT_HOST = 'git.example.org';
const NOGIT_HOST = 'nogit.example.org';
const OWNER = 2345;

t.test('runner end to end', async (t) => {
  await withDockerEngine(t, 'the runner end-to-end test', () => run(t));
});

/** Four directories under `root` whose derived /24 (names.ts) is one and the same. */
function collidingDirs(root: string): string[] {
  const by = new Map<string, string[]>();
  for (let i = 0; i < 20_000; i++) {
    const dir = join(root, `p${i}`);
    const s = projectFor(dir).subnet;
    const list = by.get(s) ?? [];
    list.push(dir);
    by.set(s, list);
    if (list.length === 4) return list;
  }
  throw new Error('no four colliding directories found');
}

const git = async (cwd: string, args: string[]) => {
  const r = await execa('git', args, {
    cwd,
    reject: false,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.org',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.org',
    },
  });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return String(r.stdout).trim();
};

/** A bare repository for dumb-HTTP cloning: main (tag v1) and a branch `feature`, one commit each. */
async function makeRepo(dir: string): Promise<{ bare: string; v1: string; feature: string }> {
  const work = join(dir, 'repo-work');
  mkdirSync(work, { recursive: true });
  await git(work, ['init', '-q', '-b', 'main']);
  writeFileSync(join(work, 'README.md'), 'version one\n');
  await git(work, ['add', '.']);
  await git(work, ['commit', '-q', '-m', 'one']);
  await git(work, ['tag', 'v1']);
  const v1 = await git(work, ['rev-parse', 'HEAD']);
  await git(work, ['checkout', '-q', '-b', 'feature']);
  writeFileSync(join(work, 'README.md'), 'feature\n');
  await git(work, ['commit', '-q', '-am', 'feature']);
  const feature = await git(work, ['rev-parse', 'HEAD']);
  await git(work, ['checkout', '-q', 'main']);
  const bare = join(dir, 'git', 'tool.git');
  mkdirSync(join(dir, 'git'), { recursive: true });
  await git(dir, ['clone', '-q', '--bare', work, bare]);
  await git(bare, ['update-server-info']);
  return { bare, v1, feature };
}

/** A static HTTPS server for /srv (dumb-HTTP git) on address `ip` of the world network, with the world's certificate. */
async function startGitServer(world: DockerWorld, ip: string, dir: string): Promise<void> {
  const script = `const https = require('https'), fs = require('fs'), path = require('path');
https.createServer({ cert: fs.readFileSync('/world/cert.pem'), key: fs.readFileSync('/world/key.pem') }, (req, res) => {
  const p = path.join('/srv', path.normalize(decodeURIComponent(req.url.split('?')[0])));
  fs.appendFileSync('/world/git-requests.log', req.url + '\\n');
  fs.readFile(p, (e, b) => { if (e) { res.writeHead(404); res.end(); } else { res.writeHead(200); res.end(b); } });
}).listen(443, ${JSON.stringify(ip)}, () => console.log('git ready'));`;
  const r = await docker([
    'run',
    '-d',
    '--name',
    `cxe-e2e-${id}-git`,
    '--label',
    `${E2E_LABEL}=${id}`,
    '--network',
    world.network,
    '--ip',
    ip,
    '-v',
    `${join(dir, 'world')}:/world`,
    '-v',
    `${join(dir, 'git')}:/srv:ro`,
    BASE_IMAGE,
    'node',
    '-e',
    script,
  ]);
  if (r.code !== 0) throw new Error(`git server: ${r.stderr}`);
  for (let i = 0; i < 50; i++) {
    if ((await docker(['logs', `cxe-e2e-${id}-git`])).stdout.includes('git ready')) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('the git server did not start');
}

async function run(t: Test) {
  const tmp = tempDir('codex-egress-runner-');
  mkdirSync(join(tmp.path, 'home'));
  const env = e2e.env(tmp.path);
  const cli = (cwd: string, args: string[], timeout = 600_000) => runCli(cwd, env, args, timeout);
  const projects: Project[] = [];
  t.teardown(() => e2e.remove(projects, tmp));
  if (!(await baseImageReady(t))) return;
  const codex = await packFakeCodex(tmp.path);
  const base = await nodeLtsBase();
  const b = await withImageLock(() =>
    cli(
      tmp.path,
      ['build', '--base', base, '--codex-tarballs', codex, '--build-arg', 'PACKAGES=ca-certificates git curl', '--quiet'],
      900_000,
    ),
  );
  t.equal(b.code, 0, `build ${b.stderr.slice(-600)}`);
  const repo = await makeRepo(tmp.path);
  const world = await startDockerWorld(tmp.path, id, [ALLOWED, GIT_HOST, NOGIT_HOST], (address) => ({
    [GIT_HOST]: { a: [address(3)], ttl: 5 },
  }));
  await startGitServer(world, world.address(3), tmp.path);
  const net = ['--no-defaults', '--upstream', world.ip, '--egress-network', world.network];

  await t.test('four concurrent exec runs whose derived /24 is the same: each gets a free one', async (t) => {
    const dirs = collidingDirs(join(tmp.path, 'many'));
    for (const d of dirs) {
      mkdirSync(d, { recursive: true });
      chownSync(d, OWNER, OWNER);
      projects.push(projectFor(d));
    }
    t.equal(new Set(dirs.map((d) => projectFor(d).subnet)).size, 1, `the four directories derive one /24 (${projectFor(dirs[0]!).subnet})`);
    const runs = await Promise.all(
      dirs.map((d, i) => cli(d, ['exec', ...net, '--allow', ALLOWED, `https://${ALLOWED}/run-${i}`], 900_000)),
    );
    runs.forEach((r, i) => {
      t.equal(r.code, 0, `run ${i} exit 0 ${r.stderr.slice(-800)}`);
      t.match(
        r.stdout,
        new RegExp(`hello from .* host=${ALLOWED.replace(/\./g, '\\.')} path=/run-${i}`),
        `run ${i} reached the allowed host through its own gateway`,
      );
      t.notMatch(r.stderr, /Pool overlaps/, `run ${i}: no "Pool overlaps"`);
    });
    const taken = runs.map((r) => /the internal network takes (\S+)/.exec(r.stderr)?.[1] ?? projectFor(dirs[0]!).subnet);
    t.equal(new Set(taken).size, 4, `four different /24s: ${taken.join(' ')}`);
    for (const p of projects)
      t.equal((await docker(['network', 'inspect', p.internalNetwork])).code, 1, `${p.internalNetwork} removed after its run`);
  });

  await t.test('worker mode: clone through the gateway, ref, outputs; update; a denied host fails fast', async (t) => {
    const w = join(tmp.path, 'worker');
    mkdirSync(w);
    chownSync(w, OWNER, OWNER);
    const p = projectFor(w);
    projects.push(p);
    // --read-only: a dataset outside the workdir and one inside it (mounted over the workdir's copy);
    // --config: a team config directory; --codex-bin: a host "Codex" (a script) over the image's.
    const data = join(tmp.path, 'dataset');
    mkdirSync(data);
    writeFileSync(join(data, 'd.csv'), '1,2\n');
    mkdirSync(join(w, 'cache'));
    chownSync(join(w, 'cache'), OWNER, OWNER);
    const cfg = join(tmp.path, 'team-config');
    mkdirSync(join(cfg, 'prompts'), { recursive: true });
    writeFileSync(join(cfg, 'config.toml'), 'model = "team-e2e"\n');
    writeFileSync(join(cfg, 'prompts', 'review.md'), 'review it\n');
    const hostCodex = join(tmp.path, 'host-codex');
    writeFileSync(hostCodex, '#!/bin/sh\necho "host codex binary: $*"\n');
    chmodSync(hostCodex, 0o755);
    const up = await cli(w, [
      'up',
      '--detach',
      ...net,
      '--allow',
      ALLOWED,
      '--allow',
      GIT_HOST,
      '--read-only',
      data,
      '--read-only',
      join(w, 'cache'),
      '--config',
      cfg,
      '--codex-bin',
      hostCodex,
      '--shm-size',
      '96m',
      '--json',
    ]);
    t.equal(up.code, 0, `up ${up.stderr.slice(-600)}`);
    const probes = (JSON.parse(up.stdout.slice(up.stdout.indexOf('{'))) as { probes: Array<{ id: string; ok: boolean; detail: string }> })
      .probes;
    const ro = probes.filter((x) => x.id === 'read-only');
    t.same(
      ro.map((x) => x.detail.slice(0, x.detail.indexOf(':'))).sort(),
      [data, join(w, 'cache'), '/usr/local/bin/codex'].sort(),
      'verify probes every read-only mount (the two --read-only paths, --codex-bin)',
    );
    for (const x of ro) t.match(x, { ok: true, detail: /: mount ro; write (EROFS|EACCES)/ }, `read-only from inside: ${x.detail}`);
    const v = await cli(w, ['verify']);
    t.equal(v.code, 0, 'verify on the running appliance passes');
    t.match(v.stdout, new RegExp(`PASS\\s+read-only\\s+${join(w, 'cache')}: mount ro`), 'the path inside the workdir is read-only too');
    const inSandbox = await docker([
      'exec',
      p.sandbox,
      'sh',
      '-c',
      'cat $CODEX_HOME/config.toml $CODEX_HOME/prompts/review.md; codex --version; df -m /dev/shm | tail -1',
    ]);
    t.match(
      inSandbox.stdout,
      /^model = "team-e2e"\nreview it\nhost codex binary: --version\n/,
      '--config and --codex-bin seen from inside the sandbox',
    );
    t.match(inSandbox.stdout, /\s96\s/, '--shm-size: /dev/shm is 96 MB');
    t.not(
      (await docker(['exec', p.sandbox, 'sh', '-c', `echo x > ${hostCodex}; echo x > /usr/local/bin/codex`])).code,
      0,
      'the host binary is read-only inside',
    );
    t.equal(readFileSync(hostCodex, 'utf8'), '#!/bin/sh\necho "host codex binary: $*"\n');
    // The worker runs below need the fake Codex of the image again: the appliance is restarted without --codex-bin.
    t.equal((await cli(w, ['down'])).code, 0);
    const up2 = await cli(w, ['up', '--detach', ...net, '--allow', ALLOWED, '--allow', GIT_HOST]);
    t.equal(up2.code, 0, `up again ${up2.stderr.slice(-600)}`);
    // The fake internet's self-signed certificate, trusted by the sandbox's git (test set-up, as root).
    const ca = await execa('docker', ['exec', '-i', '-u', '0', p.sandbox, 'sh', '-c', 'cat >> /etc/ssl/certs/ca-certificates.crt'], {
      input: readFileSync(join(tmp.path, 'world', 'cert.pem')),
      reject: false,
    });
    t.equal(ca.exitCode, 0, 'world CA trusted in the sandbox');

    const url = `https://${GIT_HOST}/tool.git`;
    const r1 = await cli(w, ['exec', '--repo', url, '--ref', 'v1', `https://${ALLOWED}/worker`]);
    t.equal(r1.code, 0, `worker exec exit 0 ${r1.stderr.slice(-800)}`);
    const outDir = /run\.log, exit\.json and summary\.md in (\S+)/.exec(r1.stderr)?.[1] ?? '';
    t.ok(outDir && existsSync(join(outDir, 'exit.json')), `run dir ${outDir}`);
    const x = JSON.parse(readFileSync(join(outDir, 'exit.json'), 'utf8'));
    t.equal(x.exitCode, 0);
    t.equal(x.repo, url, 'exit.json: repo URL');
    t.equal(x.ref, 'v1', 'exit.json: ref');
    t.equal(x.commit, repo.v1, 'exit.json: the commit checked out is the tag v1');
    t.equal(x.repoDir, join(w, 'tool'), 'the clone is <workdir>/<name from the URL>');
    t.ok(
      Array.isArray(x.allowlist) && x.allowlist.some((r: { rule: string }) => r.rule === GIT_HOST),
      'exit.json: the effective allowlist',
    );
    t.equal(readFileSync(join(w, 'tool', 'README.md'), 'utf8'), 'version one\n', 'v1 checked out in the workdir');
    t.equal(statSync(join(w, 'tool', 'README.md')).uid, OWNER, 'the clone belongs to the sandbox user (cloned inside the sandbox)');
    t.ok(existsSync(join(w, 'tool', 'codex-made.txt')), 'Codex ran in the clone');
    const summary = readFileSync(join(outDir, 'summary.md'), 'utf8');
    t.match(
      summary,
      `fake codex last message: cwd=${join(w, 'tool')} safe=${join(w, 'tool')}`,
      "summary.md: Codex's last message (cwd the clone, marked safe)",
    );
    t.match(summary, repo.v1, 'summary.md names the commit');
    t.match(
      readFileSync(join(outDir, 'run.log'), 'utf8'),
      /cloning https:\/\/git\.example\.org\/tool\.git into tool[^]*fake codex key/,
      'run.log: the clone, then Codex',
    );
    t.match(
      readFileSync(join(tmp.path, 'world', 'git-requests.log'), 'utf8'),
      /\/tool\.git\/info\/refs/,
      'the git server was reached (through the gateway: the sandbox has no other way)',
    );
    await auditWritten();
    const audit = await cli(w, ['logs', '--json']);
    t.match(audit.stdout, new RegExp(`"host":"${GIT_HOST.replace(/\./g, '\\.')}"`), 'the clone is in the audit log');

    const r2 = await cli(w, ['exec', '--repo', url, '--ref', 'feature', '--output', join(tmp.path, 'out2'), `https://${ALLOWED}/worker2`]);
    t.equal(r2.code, 0, `update exit 0 ${r2.stderr.slice(-800)}`);
    t.match(r2.stderr, /updating tool from/, 'the existing clone is updated, not cloned again');
    t.equal(JSON.parse(readFileSync(join(tmp.path, 'out2', 'exit.json'), 'utf8')).commit, repo.feature, 'the branch feature checked out');
    t.equal(readFileSync(join(w, 'tool', 'README.md'), 'utf8'), 'feature\n');

    const bad = await cli(w, [
      'exec',
      '--repo',
      `https://${GIT_HOST}/tool.git`,
      '--ref',
      'no-such-ref',
      '--output',
      join(tmp.path, 'out3'),
      'x',
    ]);
    t.equal(bad.code, 1, 'an unknown ref: the clone script fails, Codex does not run');
    t.match(JSON.parse(readFileSync(join(tmp.path, 'out3', 'exit.json'), 'utf8')).error, /clone .* failed .*exit 66/);
    t.match(bad.stderr, /ref no-such-ref not found/);

    const before = (await world.queries()).length;
    const started = Date.now();
    const denied = await cli(w, ['exec', '--repo', `https://${NOGIT_HOST}/x.git`, 'x']);
    t.equal(denied.code, 1, 'a denied repository host: exit 1');
    t.match(
      denied.stderr,
      `the repository host ${NOGIT_HOST} is not on the allowlist: nothing was cloned. Allow it with "codex-egress allow ${NOGIT_HOST}"`,
      'the message names the rule to add',
    );
    t.ok(Date.now() - started < 30_000, `fails fast (${Date.now() - started} ms), not a git timeout`);
    t.notOk(
      (await world.queries()).slice(before).some((q) => q.name === NOGIT_HOST),
      'nothing asked for the denied host',
    );
    t.equal((await cli(w, ['down'])).code, 0);
  });

  // gVisor: only where a working runsc is registered with the engine (CODEX_EGRESS_TEST_RUNTIME names it;
  // README: A stronger boundary, for why Debian's runsc needs --network=host on recent kernels).
  const runtime = process.env.CODEX_EGRESS_TEST_RUNTIME;
  await t.test(
    '--runtime: the appliance verified with the sandbox under gVisor',
    { skip: runtime ? false : 'CODEX_EGRESS_TEST_RUNTIME is not set (a runsc runtime registered with the engine)' },
    async (t) => {
      const g = join(tmp.path, 'gvisor');
      mkdirSync(g);
      chownSync(g, OWNER, OWNER);
      const p = projectFor(g);
      projects.push(p);
      const up = await cli(g, [
        'up',
        '--detach',
        ...net,
        '--allow',
        ALLOWED,
        '--runtime',
        runtime!,
        '--read-only',
        join(tmp.path, 'dataset'),
      ]);
      t.equal(up.code, 0, `up under ${runtime}: every probe passed ${up.stderr.slice(-800)}`);
      t.match(up.stdout, /PASS\s+read-only\s+.*dataset: mount ro/, 'the read-only probe under gVisor');
      t.equal(
        (await docker(['inspect', '--format', '{{.HostConfig.Runtime}}', p.sandbox])).stdout.trim(),
        runtime,
        'the sandbox runs under it',
      );
      t.equal((await docker(['inspect', '--format', '{{.HostConfig.Runtime}}', p.gateway])).stdout.trim(), 'runc', 'the gateway does not');
      t.match((await docker(['exec', p.sandbox, 'dmesg'])).stdout, /gVisor/i, "the sandbox's kernel is gVisor's");
      const x = await cli(g, ['exec', `https://${ALLOWED}/under-gvisor`]);
      t.equal(x.code, 0, x.stderr.slice(-400));
      t.match(x.stdout, /hello from .* path=\/under-gvisor/, 'Codex reaches the allowed host through the gateway');
      t.equal((await cli(g, ['down'])).code, 0);
    },
  );
}
