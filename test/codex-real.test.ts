// End to end with the real Codex CLI (@openai/codex at image/context.ts CODEX_VERSION, npm-packed once into
// a cache on the machine): the sandbox image built by `codex-egress build --codex-tarballs`, `up --detach`
// behind the real gateway, and `codex exec` in the sandbox talking to a scripted OpenAI Responses API in
// the fake internet (test/fixtures/openai.ts, TLS from a test CA the gateway trusts with --upstream-ca).
// The API key is injected by the gateway (README: Credentials): the fake API checks it received the real
// key, while the sandbox's environment, files, processes and docker inspect hold only the sentinel, and
// Codex trusts the gateway's per-project CA, which `up` gave the sandbox (CODEX_CA_CERTIFICATE and the rest).
// The script makes Codex run one shell command that writes a file in the workdir and fetches an allowed and
// a denied host; once over the WebSocket transport, once over POST + SSE (the API refuses the upgrade and
// Codex falls back); the same command also tries the allowed host around the proxy. Nothing leaves the
// machine: the world is an --internal network on 198.51.100.0/24.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';
import {
  auditWritten,
  BASE_IMAGE,
  withDockerEngine,
  e2eRun,
  docker,
  startDockerWorld,
  removeE2E,
  withImageLock,
  type DockerWorld,
} from './harness/docker.js';
import { cachedCodexTarballs, fakeOpenAI, makeTestCA, type FakeOpenAI } from './harness/codex.js';
import { CODEX_VERSION, codexPlatform } from '../image/context.js';
import { sandboxExecArgs, codexCommand } from '../image/args.js';
import { createHash } from 'node:crypto';
import { statePaths } from '../image/project.js';
import { credentialPaths } from '../image/credentials.js';
import { SENTINEL } from '../proxy/inject/credentials.js';
import { projectFor, PROJECT_LABEL } from '../image/names.js';

// No Codex flags of the test's own: the command line is exactly what `codex-egress exec` builds
// (codexCommand: Codex's own sandbox off, the appliance is the sandbox), and the sandbox user is the
// workdir's owner below.

const e2e = e2eRun();
const { id, images } = e2e;
const ALLOWED = 'allowed.example.org';
const DENIED = 'denied.example.org';
/** A GitHub-like API in the world: its token is a `codex-egress secret` the gateway injects. */
const GH_HOST = 'api.github.example.org';
const KEY = 'sk-codex-egress-test-real-key-3f9a1c';
const GH_TOKEN = 'ghp_e2eFakeToken0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
/** GET https://api.openai.com/v1/models through the proxy with node's own TLS (default trust), prints node=STATUS. */
const NODE_TLS_PROBE = `
const http = require('http'), tls = require('tls');
const u = new URL(process.env.HTTPS_PROXY);
http.request({ host: u.hostname, port: u.port, method: 'CONNECT', path: 'api.openai.com:443' }).on('connect', (res, s) => {
  const t = tls.connect({ socket: s, servername: 'api.openai.com' }, () => t.write('GET /v1/models HTTP/1.1\\r\\nHost: api.openai.com\\r\\nConnection: close\\r\\n\\r\\n'));
  t.once('data', (d) => { console.log('node=' + String(d).split(' ')[1]); process.exit(0); });
  t.on('error', (e) => { console.log('node=' + e.code); process.exit(0); });
}).on('error', (e) => console.log('node=' + e.code)).end();`;
const API_NAMES = ['api.openai.com', 'chatgpt.com'];
/** The fake API's address on the world network (DockerWorld.address): the /28's last, which Docker hands out last. */
const API_ADDRESS = 13;
/** The workdir's owner: an ordinary user, not the one running codex-egress (root). */
const OWNER = { uid: 1000, gid: 1000 };
const FINAL = 'codex-egress real-client test: done';

// A first run on a machine packs ~170 MB from the npm registry (bounded below); later runs take about a
// minute. On the root object, so the runner's per-file timeout (.taprc) follows.
t.setTimeout(20 * 60_000);

t.test('real Codex end to end', async (t) => {
  await withDockerEngine(t, 'the real-Codex end-to-end test', () => run(t));
});

/** The one shell command the scripted model has Codex run (in the workdir, Codex's cwd). */
const command = (tag: string) =>
  [
    `echo "written by codex (${tag})" > codex-${tag}.txt`,
    `curl -sS -k -m 15 -o allowed-${tag}.body -w '%{http_code}' https://${ALLOWED}/from-codex-${tag} > allowed-${tag}.code`,
    `curl -sS -k -m 15 -D denied-${tag}.headers -o /dev/null -w '%{http_connect}' https://${DENIED}/from-codex-${tag} > denied-${tag}.code`,
    // the same allowed host around the proxy: the sandbox has no route but the gateway
    `curl -sS -k -m 3 --noproxy '*' -o /dev/null -w '%{http_code}' https://${ALLOWED}/direct-${tag} > direct-${tag}.code`,
    `echo fetched`,
  ].join('; ');

async function run(t: Test) {
  const tmp = tempDir('codex-egress-real-');
  const project = join(tmp.path, 'my-project');
  mkdirSync(project);
  mkdirSync(join(tmp.path, 'home'));
  const p = projectFor(project);
  const env = e2e.env(tmp.path);
  const cli = async (args: string[], timeout = 180_000) => {
    const r = await execa(process.execPath, [CLI, ...args], { cwd: project, env, reject: false, timeout });
    return { code: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };

  t.teardown(async () => {
    await docker(['rm', '-f', '-v', p.sandbox, p.gateway]);
    for (const n of [p.internalNetwork, p.egressNetwork]) await docker(['network', 'rm', n]);
    await removeE2E(id, [images.gateway, images.codex]);
    if (!process.env.KEEP_E2E) tmp.remove();
  });

  if ((await docker(['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE])).code !== 0) {
    t.fail(`base image ${BASE_IMAGE} missing: run test/harness/docker-setup.sh`);
    return;
  }

  let world: DockerWorld | undefined;
  let api: FakeOpenAI | undefined;
  let caFile = '';
  let ready = false;
  await t.test(`build: the sandbox image with the real Codex ${CODEX_VERSION}, the fake internet, up --detach`, async (t) => {
    const started = Date.now();
    const tarballs = await cachedCodexTarballs(CODEX_VERSION, codexPlatform(), (s) => t.comment(s));
    // The base image has what Codex exec needs; nothing is downloaded while building.
    const b = await withImageLock(() =>
      cli(
        [
          'build',
          '--base',
          BASE_IMAGE,
          '--codex-tarballs',
          tarballs,
          '--build-arg',
          'PACKAGES=ca-certificates git curl python3',
          '--quiet',
        ],
        10 * 60_000,
      ),
    );
    t.equal(b.code, 0, `build exit 0 ${b.stderr.slice(-800)}`);
    const v = await docker(['run', '--rm', '--network', 'none', images.codex, 'codex', '--version']);
    t.match(v.stdout, new RegExp(`codex-cli ${CODEX_VERSION.replace(/\./g, '\\.')}`), 'the sandbox image runs the pinned Codex');
    t.comment(`tarballs + build took ${Date.now() - started} ms`);
    if (b.code !== 0) return;

    // api.openai.com and chatgpt.com answer with the fake API's address, beside the world
    const w = await startDockerWorld(tmp.path, id, [ALLOWED, DENIED, GH_HOST], (address) =>
      Object.fromEntries(API_NAMES.map((n) => [n, { a: [address(API_ADDRESS)], ttl: 5 }])),
    );
    world = w;
    const tls = await makeTestCA(join(tmp.path, 'ca'), API_NAMES);
    // the sandbox sees the CA certificate only (a read-only mount), never its key
    mkdirSync(join(tmp.path, 'trust'));
    caFile = join(tmp.path, 'trust', 'ca.pem');
    copyFileSync(tls.ca, caFile);
    api = fakeOpenAI(w, join(tmp.path, 'api'), id, tls, API_ADDRESS);
    await api.start({ command: 'true', finalMessage: FINAL }); // holds its address before the gateway joins

    // A git project owned by an ordinary user; an API key for Codex in auth.json (mounted read-only).
    await execa('git', ['init', '-q', project]);
    await execa('chown', ['-R', `${OWNER.uid}:${OWNER.gid}`, project]);
    const auth = join(tmp.path, 'auth.json');
    writeFileSync(auth, JSON.stringify({ OPENAI_API_KEY: KEY }), { mode: 0o644 });
    // the gateway verifies the real hosts: the fake API's CA and the world's self-signed certificate
    const upstreamCa = join(tmp.path, 'upstream-ca.pem');
    writeFileSync(upstreamCa, readFileSync(tls.ca, 'utf8') + readFileSync(join(tmp.path, 'world', 'cert.pem'), 'utf8'));
    const secret = await cli([
      'secret',
      'set',
      'github',
      '--host',
      GH_HOST,
      '--format',
      'token {value}',
      '--command',
      `printf ${GH_TOKEN}`,
      '--env',
      'GH_TOKEN',
    ]);
    t.equal(secret.code, 0, `secret set ${secret.stderr}`);
    const up = await cli([
      'up',
      '--detach',
      '--no-defaults',
      '--allow',
      ALLOWED,
      ...API_NAMES.flatMap((n) => ['--allow', n]),
      '--allow',
      GH_HOST,
      '--upstream',
      w.ip,
      '--egress-network',
      w.network,
      '--auth-file',
      auth,
      '--read-only',
      join(tmp.path, 'trust'),
      '--upstream-ca',
      upstreamCa,
    ]);
    t.match(up.stderr, /credentials: the OpenAI key \(from auth\.json\) is held by the gateway/, 'auto: an API key is injected');
    t.equal(up.code, 0, `up exit 0 (verify green) ${up.stdout}${up.stderr.slice(-800)}`);
    ready = up.code === 0;
  });
  if (!ready || !world || !api) return;
  const fake = api;

  /**
   * `codex exec` in the running sandbox, with the arguments `codex-egress exec` uses (sandboxExecArgs) and
   * nothing else: no key and no CA of the test's (the sandbox trusts the gateway's CA, which `up` set up).
   */
  const codexExec = async (prompt: string) => {
    const r = await execa(
      'docker',
      sandboxExecArgs(p, ['timeout', '-k', '5', '150', ...codexCommand({ mode: 'off', sub: ['exec'], userArgs: [prompt] })]),
      { reject: false, timeout: 180_000, stdin: 'ignore' },
    );
    return { code: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const audit = async () => {
    await auditWritten();
    const r = await cli(['logs', '--json']);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as { event: string; of?: string; count?: number; host?: string; decision?: string; reason?: string; mode?: string },
      );
  };
  /** CONNECT decisions for a host: one per `connect` line, and a `repeat` line's count (repeated denials are summarised). */
  const connects = (lines: Awaited<ReturnType<typeof audit>>, host: string, decision: string) =>
    lines
      .filter((l) => l.host === host && l.decision === decision && (l.event === 'connect' || (l.event === 'repeat' && l.of === 'connect')))
      .reduce((n, l) => n + (l.event === 'repeat' ? (l.count ?? 0) : 1), 0);

  for (const transport of ['websocket', 'sse'] as const) {
    await t.test(
      `codex exec over ${transport === 'websocket' ? 'the WebSocket transport' : 'POST + SSE (WebSocket refused)'}`,
      async (t) => {
        const tag = transport;
        await fake.start({ command: command(tag), finalMessage: FINAL, refuseWebSocket: transport === 'sse' });
        const before = await audit();
        const started = Date.now();
        const r = await codexExec(`Write codex-${tag}.txt and fetch the two hosts.`);
        t.comment(`codex exec took ${Date.now() - started} ms`);
        const reqs = fake.requests();
        const diag = `\n--- codex stdout ---\n${r.stdout.slice(-1500)}\n--- codex stderr ---\n${r.stderr.slice(-1500)}\n--- API requests ---\n${reqs.map((q) => JSON.stringify(q).slice(0, 300)).join('\n')}`;
        t.equal(r.code, 0, `Codex exits 0${r.code === 0 ? '' : diag}`);
        t.match(r.stdout, FINAL, 'Codex printed the final assistant message');

        // the transport the API served
        const turns = reqs.filter((q) => q.kind === 'call' || q.kind === 'final');
        t.same(
          turns.map((q) => q.kind),
          ['call', 'final'],
          `one shell call, then the final message${diag}`,
        );
        t.ok(
          turns.every((q) => q.transport === (transport === 'websocket' ? 'websocket' : 'http')),
          `both turns over ${transport}`,
        );
        if (transport === 'websocket') {
          t.ok(
            reqs.some((q) => q.kind === 'warmup' && q.generate === false),
            'a warm-up response.create with generate: false',
          );
          t.equal(turns[1]?.previous_response_id, 'resp_2', 'the second turn links the first by previous_response_id');
        } else {
          t.ok(
            reqs.some((q) => q.transport === 'websocket' && q.status === 426),
            'the WebSocket upgrade was refused',
          );
          t.notOk(
            reqs.some((q) => q.transport === 'websocket' && q.status === 101),
            'and never accepted',
          );
        }
        const responses = reqs.filter((q) => q.path === '/v1/responses');
        t.ok(responses.length > 0 && responses.every((q) => q.auth), `every /v1/responses request carried the API key${diag}`);
        t.ok(
          responses.every((q) => q.auth_sha256 === sha(`Bearer ${KEY}`)),
          `the API received the real key (the gateway replaced the sentinel)${diag}`,
        );
        const output = turns[1]?.outputs?.join('\n') ?? '';
        t.match(output, /fetched/, `the command ran to the end and its output went back to the model${/fetched/.test(output) ? '' : diag}`);

        // what the command did, seen from the host
        const file = join(project, `codex-${tag}.txt`);
        t.ok(existsSync(file), 'the file Codex wrote exists in the workdir');
        if (existsSync(file)) {
          t.equal(readFileSync(file, 'utf8'), `written by codex (${tag})\n`);
          const st = statSync(file);
          t.same({ uid: st.uid, gid: st.gid }, OWNER, "owned by the workdir's owner");
        }
        const read = (f: string) => (existsSync(join(project, f)) ? readFileSync(join(project, f), 'utf8') : '');
        t.equal(read(`allowed-${tag}.code`), '200', 'the allowed fetch succeeded');
        t.match(
          read(`allowed-${tag}.body`),
          new RegExp(`hello from .* host=${ALLOWED.replace(/\./g, '\\.')} path=/from-codex-${tag}`),
          'served by the allowed host',
        );
        t.equal(read(`denied-${tag}.code`), '403', 'the denied fetch got 403 from the gateway');
        t.match(read(`denied-${tag}.headers`), /^x-codex-egress-deny: \S+/im, 'with the deny header');
        // around the proxy (no proxy settings), the allowed name still works: transparent mode (on by default)
        // answers it with a pool address of the gateway, which takes the same checks (test/transparent.test.ts)
        t.equal(read(`direct-${tag}.code`), '200', 'around the proxy, the allowed name goes through the gateway (transparent mode)');

        // the decisions in the audit log
        const expected: Array<[string, string, string]> = [
          [ALLOWED, 'allow', `audit: the allowed CONNECT to ${ALLOWED}`],
          [DENIED, 'deny', `audit: the denied CONNECT to ${DENIED}`],
          ['api.openai.com', 'allow', "audit: Codex's own API traffic went through the gateway"],
        ];
        const grew = (after: Awaited<ReturnType<typeof audit>>, [host, decision]: [string, string, string]) =>
          connects(after, host, decision) > connects(before, host, decision);
        let after = await audit();
        // the gateway writes its log asynchronously, and a repeated denial shows in the `repeat` line at the end
        // of its 10 s summary window: wait (bounded) for the lines
        for (let i = 0; i < 75 && !expected.every((e) => grew(after, e)); i++) {
          await new Promise((r) => setTimeout(r, 200));
          after = await audit();
        }
        for (const e of expected) t.ok(grew(after, e), e[2]);
        const transparentTo = (lines: Awaited<ReturnType<typeof audit>>) =>
          lines.filter((l) => l.event === 'connect' && l.host === ALLOWED && l.decision === 'allow' && l.mode === 'transparent').length;
        for (let i = 0; i < 75 && transparentTo(after) <= transparentTo(before); i++) {
          await new Promise((r) => setTimeout(r, 200));
          after = await audit();
        }
        t.ok(transparentTo(after) > transparentTo(before), `audit: the fetch around the proxy is a transparent connection to ${ALLOWED}`);
      },
    );
  }

  await t.test('the sandbox holds only the sentinel; the gateway injects; the CA is trusted by curl, node and python', async (t) => {
    const inSandbox = async (script: string, user?: string, vars: Record<string, string> = {}) => {
      const r = await execa(
        'docker',
        ['exec', ...(user ? ['-u', user] : []), ...Object.keys(vars).flatMap((k) => ['-e', k]), p.sandbox, 'sh', '-c', script],
        { reject: false, timeout: 120_000, env: vars },
      );
      return { code: r.exitCode ?? 1, out: String(r.stdout), errOut: String(r.stderr) };
    };
    const caKey = readFileSync(join(credentialPaths(statePaths(p, env)).caDir, 'ca-key.pem'), 'utf8').split('\n')[1]!;
    const secrets = [KEY, GH_TOKEN, caKey];
    const holds = (text: string) => secrets.filter((s) => text.includes(s)).map((s) => (s === caKey ? 'the CA key' : `${s.slice(0, 6)}…`));

    const envOut = await inSandbox('env');
    t.match(envOut.out, new RegExp(`^CODEX_API_KEY=${SENTINEL}$`, 'm'), 'CODEX_API_KEY is the sentinel');
    t.match(envOut.out, new RegExp(`^GH_TOKEN=${SENTINEL}$`, 'm'), 'GH_TOKEN is the sentinel');
    t.same(holds(envOut.out), [], 'no real value in the environment');
    const procs = await inSandbox('ps axeww; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n"', '0:0');
    t.ok(procs.out.includes(SENTINEL), 'ps and /proc show the processes (with the sentinel)');
    t.same(holds(procs.out), [], 'no real value in any process');
    const inspect = await docker(['inspect', p.sandbox, p.gateway]);
    t.same(holds(inspect.stdout), [], 'docker inspect of the sandbox and the gateway: no real value');
    // every file the sandbox can see (as root inside it), mounts included
    const files = await inSandbox(
      `grep -rlsF ${secrets.map((s) => `-e '${s}'`).join(' ')} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; echo done`,
      '0:0',
    );
    t.equal(files.out.trim(), 'done', `no file in the sandbox holds a real value or the CA key${files.out}`);
    const hostGrep = await execa('grep', ['-rlsF', '-e', KEY, '-e', GH_TOKEN, project], { reject: false });
    t.equal(String(hostGrep.stdout), '', 'nor any file in the workdir (host side)');

    // the CA is trusted by the sandbox's clients for the intercepted provider host (no -k anywhere)
    const trust = await inSandbox(
      [
        `curl -sS -o /dev/null -w 'curl=%{http_code}\n' https://api.openai.com/v1/models`,
        // node's TLS with its default trust (+ NODE_EXTRA_CA_CERTS) through a CONNECT of its own: the base image's
        // Node 20 fetch ignores the proxy variables
        `node -e "$NODE_PROBE"`,
        `python3 -c "import urllib.request; print('python=%d' % urllib.request.urlopen('https://api.openai.com/v1/models').status)"`,
      ].join('; '),
      undefined,
      { NODE_PROBE: NODE_TLS_PROBE },
    );
    t.match(trust.out, /curl=200/, `curl trusts the project CA ${trust.errOut}`);
    t.match(trust.out, /node=200/, 'node trusts it');
    t.match(trust.out, /python=200/, `python trusts it ${trust.errOut.slice(-300)}`);

    // the sentinel stolen and sent to another allowed host carries nothing; the gh-style token is injected for its host
    const stolen = await inSandbox(
      `curl -sS -k -H "Authorization: Bearer $CODEX_API_KEY" https://${ALLOWED}/echo-auth; curl -sS -H "Authorization: token $GH_TOKEN" https://${GH_HOST}/echo-auth`,
    );
    const seen = [...stolen.out.matchAll(/\{"who":[^\n]*?\]\}/g)].map((m) => (JSON.parse(m[0]) as { auth: string[] }).auth);
    t.same(
      seen,
      [[sha(`Bearer ${SENTINEL}`)], [sha(`token ${GH_TOKEN}`)]],
      `the allowed host got the sentinel, the GitHub-like host its token ${stolen.out}${stolen.errOut}`,
    );

    // and in the logs: injected, by name; never a value
    await auditWritten();
    const logs = await cli(['logs', '--json']);
    const lines = logs.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    t.ok(
      lines.some((l) => l.host === 'api.openai.com' && l.credential === 'injected' && l.credential_name === 'openai'),
      'audit: openai injected',
    );
    t.ok(
      lines.some((l) => l.host === GH_HOST && l.credential === 'injected' && l.credential_name === 'github'),
      'audit: github injected',
    );
    const gwLogs = await docker(['logs', p.gateway]);
    t.same(
      holds(logs.stdout + readFileSync(statePaths(p, env).auditLog, 'utf8') + gwLogs.stdout + gwLogs.stderr),
      [],
      'no real value in the audit log or the gateway output',
    );
  });

  await t.test('down removes exactly what up made', async (t) => {
    const r = await cli(['down', '--json']);
    t.equal(r.code, 0, r.stderr);
    t.equal((await docker(['ps', '-aq', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no container');
    t.equal((await docker(['network', 'ls', '-q', '--filter', `label=${PROJECT_LABEL}=${p.name}`])).stdout, '', 'no network');
    t.notOk(existsSync(credentialPaths(statePaths(p, env)).file), 'the real values left the disk with down');
  });
}
