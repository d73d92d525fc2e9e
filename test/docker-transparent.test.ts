// Transparent egress by name, end to end with a real Docker engine: `up --detach` (transparent mode is
// the default) behind a fake internet on an --internal network; inside the sandbox, with the proxy
// variables unset, Node's fetch and `git ls-remote` over HTTPS reach allowed names; denied names and
// real addresses stay closed; verify's transparent probe passes; `--no-transparent` turns it off.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { mkdirSync, chownSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './harness/world.js';
import {
  auditWritten,
  BASE_IMAGE,
  E2E_LABEL,
  withDockerEngine,
  baseImageReady,
  runCli,
  e2eRun,
  docker,
  packFakeCodex,
  startDockerWorld,
  nodeLtsBase,
  type DockerWorld,
  withImageLock,
} from './harness/docker.js';
import { projectFor } from '../image/names.js';

const e2e = e2eRun();
const { id } = e2e;
const ALLOWED = 'allowed.example.org';
const GIT_HOST = 'git.example.org';
const NEVER = 'never.example.org';
const OWNER = 2345;
/** The proxy variables the sandbox has, all unset: what a tool that ignores them sees. */
const NO_PROXY_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'NO_PROXY', 'no_proxy', 'NODE_USE_ENV_PROXY'].flatMap(
  (v) => ['-u', v],
);

t.test('docker end to end: transparent egress by name', async (t) => {
  await withDockerEngine(t, 'the Docker transparent-mode test', (engine) => run(t, engine));
});

async function run(t: Test, engine: string) {
  const tmp = tempDir('codex-egress-e2e-tp-');
  const project = join(tmp.path, 'tp-project');
  mkdirSync(project);
  chownSync(project, OWNER, OWNER);
  mkdirSync(join(tmp.path, 'home'));
  const p = projectFor(project);
  const env = e2e.env(tmp.path);
  const cli = (args: string[], timeout = 180_000) => runCli(project, env, args, timeout);
  /** A command in the sandbox with no proxy variables at all. */
  const bare = (cmd: string[], timeout = 60_000) =>
    docker(['exec', '-e', 'NODE_EXTRA_CA_CERTS=/tmp/world-ca.pem', p.sandbox, 'env', ...NO_PROXY_ENV, ...cmd], timeout);
  const audit = async () =>
    (await auditWritten(), await cli(['logs', '--json'])).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  t.teardown(() => e2e.remove([p], tmp));
  t.ok(engine, `engine ${engine}`);
  if (!(await baseImageReady(t))) return;

  let world!: DockerWorld;
  const upArgs = () => [
    '--no-defaults',
    '--allow',
    ALLOWED,
    '--allow',
    GIT_HOST,
    '--upstream',
    world.ip,
    '--egress-network',
    world.network,
  ];

  await t.test('build the images; the fake internet with a git repository served over HTTPS', async (t) => {
    const base = await nodeLtsBase();
    const codex = await packFakeCodex(tmp.path);
    const build = ['build', '--base', base, '--codex-tarballs', codex, '--build-arg', 'PACKAGES=ca-certificates git curl', '--quiet'];
    const r = await withImageLock(() => cli(build, 900_000));
    t.equal(r.code, 0, `build exit 0 ${r.stderr.slice(-600)}`);
    world = await startDockerWorld(tmp.path, id, [ALLOWED, GIT_HOST, NEVER], (address) => ({ [GIT_HOST]: { a: [address(3)], ttl: 5 } }));
    // A bare repository with one commit, made on the host, served as static files (git's dumb HTTP protocol).
    const repo = join(tmp.path, 'world', 'repo.git');
    const work = join(tmp.path, 'work');
    const git = (args: string[], cwd = work) =>
      execa('git', args, {
        cwd,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 'e2e',
          GIT_AUTHOR_EMAIL: 'e2e@example.org',
          GIT_COMMITTER_NAME: 'e2e',
          GIT_COMMITTER_EMAIL: 'e2e@example.org',
        },
      });
    mkdirSync(work);
    await git(['init', '-q', '-b', 'main']);
    await git(['commit', '-q', '--allow-empty', '-m', 'first']);
    await git(['clone', '-q', '--bare', work, repo], tmp.path);
    await git(['update-server-info'], repo);
    await execa('chmod', ['-R', 'a+rX', join(tmp.path, 'world')]);
    chmodSync(join(tmp.path, 'world'), 0o777);
    const s = await docker([
      'run',
      '-d',
      '--name',
      `cxe-e2e-${id}-git`,
      '--label',
      `${E2E_LABEL}=${id}`,
      '--network',
      world.network,
      '--ip',
      world.address(3),
      '-v',
      `${join(tmp.path, 'world')}:/world:ro`,
      '-v',
      `${ROOT}:/repo:ro`,
      BASE_IMAGE,
      'node',
      '/repo/dist/test/fixtures/static-https.js',
      '/world',
      world.address(3),
      '443',
      '/world/cert.pem',
      '/world/key.pem',
    ]);
    t.equal(s.code, 0, s.stderr);
    for (let i = 0; i < 50 && !(await docker(['logs', `cxe-e2e-${id}-git`])).stdout.includes('static ready'); i++)
      await new Promise((r) => setTimeout(r, 200));
  });
  if (!world) return;

  await t.test('up --detach: transparent by default, the verify probe says so', async (t) => {
    const r = await cli(['up', '--detach', '--json', ...upArgs()]);
    t.equal(r.code, 0, `up exit 0 ${r.stderr.slice(-800)}`);
    const verdict = JSON.parse(r.stdout) as { ok: boolean; probes: Array<{ id: string; ok: boolean; detail: string }> };
    for (const probe of verdict.probes) t.ok(probe.ok, `${probe.id}: ${probe.detail}`);
    const pool = p.subnet.replace(/\.0\/24$/, '.128/25');
    t.match(
      verdict.probes.find((x) => x.id === 'transparent'),
      {
        ok: true,
        detail: new RegExp(
          `^pool ${pool.replace(/\./g, '\\.')}; ${ALLOWED} resolved ${p.subnet.split('.').slice(0, 3).join('\\.')}\\.\\d+; TLS without proxy ok; as \\S+ (?!ok$)\\S+$`,
        ),
      },
    );
    const net = JSON.parse((await docker(['network', 'inspect', p.internalNetwork])).stdout)[0];
    t.equal(
      net.IPAM.Config[0].IPRange,
      p.subnet.replace(/\.0\/24$/, '.0/25'),
      "Docker hands out the lower half only: the upper half is the gateway's pool",
    );
    t.equal((await docker(['cp', join(tmp.path, 'world', 'cert.pem'), `${p.sandbox}:/tmp/world-ca.pem`])).code, 0);
  });

  await t.test("Node's fetch with the proxy variables unset reaches an allowed name, audited as transparent", async (t) => {
    const r = await bare([
      'node',
      '--input-type=module',
      '-e',
      `const r = await fetch('https://${ALLOWED}/bare-fetch'); console.log(r.status, await r.text());`,
    ]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^200 hello from .* host=allowed\.example\.org path=\/bare-fetch/);
    const lines = await audit();
    t.ok(
      lines.some(
        (l) => l.event === 'connect' && l.host === ALLOWED && l.mode === 'transparent' && l.decision === 'allow' && l.ip === world.ip,
      ),
      'a transparent connect line, with the real address',
    );
    t.ok(
      lines.some((l) => l.event === 'dns' && l.name === ALLOWED && (l.resolved as string[] | undefined)?.includes(world.ip)),
      'the DNS line keeps the upstream address',
    );
  });

  await t.test('git ls-remote over HTTPS with the proxy variables unset works by name', async (t) => {
    const r = await bare(['git', '-c', 'http.sslCAInfo=/tmp/world-ca.pem', 'ls-remote', `https://${GIT_HOST}/repo.git`]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^[0-9a-f]{40}\s+HEAD\n[0-9a-f]{40}\s+refs\/heads\/main/m, 'the refs of the repository');
    t.ok((await audit()).some((l) => l.event === 'connect' && l.host === GIT_HOST && l.mode === 'transparent' && l.decision === 'allow'));
  });

  await t.test('denied names and real addresses stay closed without the proxy', async (t) => {
    const n = await bare(['node', '-e', `require('node:dns').lookup('${NEVER}', (e, a) => console.log(e ? e.code : a))`]);
    t.equal(n.stdout.trim(), 'ENOTFOUND', 'a denied name does not resolve');
    const d = await bare(['curl', '-sS', '-m', '4', `http://${world.ip}/`]);
    t.not(d.code, 0, 'the real address, directly');
    const q = await bare([
      'node',
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); s.on('error', (e) => { console.log(e.code); process.exit(0); });
      require('node:dns').lookup('${ALLOWED}', (e, a) => s.connect(443, a, () => { s.send('quic?'); setTimeout(() => s.send('again'), 200); }));
      setTimeout(() => { console.log('no answer'); process.exit(0); }, 3000);`,
    ]);
    t.equal(q.stdout.trim(), 'ECONNREFUSED', 'UDP (QUIC) to the pool address is refused at once');
  });

  await t.test('--no-transparent: the sandbox gets the upstream address and the direct way is closed', async (t) => {
    t.equal((await cli(['down'])).code, 0);
    const r = await cli(['up', '--detach', '--json', '--no-transparent', ...upArgs()]);
    t.equal(r.code, 0, `up exit 0 ${r.stderr.slice(-800)}`);
    const verdict = JSON.parse(r.stdout) as { ok: boolean; probes: Array<{ id: string; ok: boolean; detail: string }> };
    t.match(
      verdict.probes.find((x) => x.id === 'transparent'),
      { ok: true, detail: new RegExp(`^off; ${ALLOWED} resolved ${world.ip.replace(/\./g, '\\.')}; direct :443 `) },
    );
    t.equal((await docker(['cp', join(tmp.path, 'world', 'cert.pem'), `${p.sandbox}:/tmp/world-ca.pem`])).code, 0);
    const f = await bare([
      'node',
      '--input-type=module',
      '-e',
      `await fetch('https://${ALLOWED}/direct', { signal: AbortSignal.timeout(5000) })`,
    ]);
    t.not(f.code, 0, 'Node without the proxy cannot reach it');
    t.equal((await cli(['down'])).code, 0);
  });
}
