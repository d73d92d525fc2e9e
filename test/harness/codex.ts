// Harness for the end-to-end test with the real Codex CLI (test/codex-real.test.ts): the npm-packed Codex
// release cached on the machine, a test CA, and the scripted OpenAI API (test/fixtures/openai.ts) as a
// container in the Docker world.
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { codexSpecs } from '../../image/context.js';
import { ROOT } from './world.js';
import { BASE_IMAGE, E2E_LABEL, docker, type DockerWorld } from './docker.js';
import type { FakeOpenAIConfig } from '../fixtures/openai.js';

/** Where the packed Codex releases are kept between runs (outside the repository, on the machine). */
export const CODEX_CACHE = process.env.CODEX_EGRESS_TEST_CACHE || '/var/cache/codex-egress-test';

/**
 * A directory holding codex.tgz and codex-platform.tgz for the release, as `codex-egress build
 * --codex-tarballs` takes them: from the cache, or `npm pack`ed into it once (the npm registry).
 */
export async function cachedCodexTarballs(version: string, platform: string, log: (s: string) => void): Promise<string> {
  const dir = join(CODEX_CACHE, `codex-${version}-${platform}`);
  if (existsSync(join(dir, 'codex.tgz')) && existsSync(join(dir, 'codex-platform.tgz'))) return dir;
  mkdirSync(CODEX_CACHE, { recursive: true });
  const tmp = join(CODEX_CACHE, `.pack-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    const specs = codexSpecs(version, platform);
    log(`npm pack ${specs.join(' ')} into ${dir} (once; later runs use the cache)`);
    const r = await execa('npm', ['pack', '--json', '--pack-destination', tmp, ...specs], { timeout: 8 * 60_000 });
    const files = (JSON.parse(String(r.stdout)) as Array<{ filename: string }>).map((f) => f.filename.replace(/^.*\//, ''));
    if (files.length !== 2) throw new Error(`npm pack returned ${files.length} packages, expected 2`);
    renameSync(join(tmp, files[0]!), join(tmp, 'codex.tgz'));
    renameSync(join(tmp, files[1]!), join(tmp, 'codex-platform.tgz'));
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir); // whole or not at all: a killed run leaves only a .pack-* directory
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** A test CA and a server certificate it signed for the names (openssl). */
export async function makeTestCA(dir: string, names: string[]): Promise<{ ca: string; cert: string; key: string }> {
  mkdirSync(dir, { recursive: true });
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca-key.pem');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  await execa('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=codex-egress test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    caKey,
    '-out',
    ca,
  ]);
  await execa('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${names[0]}`, '-keyout', key, '-out', csr]);
  writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await execa('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  for (const f of [ca, cert, key]) chmodSync(f, 0o644);
  return { ca, cert, key };
}

export interface LoggedRequest {
  transport: 'http' | 'websocket';
  method?: string;
  host?: string;
  path: string;
  status?: number;
  frame?: string;
  kind?: 'warmup' | 'call' | 'final';
  generate?: boolean;
  previous_response_id?: string;
  input_types?: string[];
  outputs?: string[];
  auth: boolean;
  /** sha256 of the Authorization header the API received. */
  auth_sha256?: string;
}

export interface FakeOpenAI {
  ip: string;
  requests(): LoggedRequest[];
  /** (Re)start the server with this script (same address, fresh log). */
  start(script: Pick<FakeOpenAIConfig, 'command' | 'finalMessage' | 'refuseWebSocket'>): Promise<void>;
}

/** The scripted OpenAI API as a container on the world network at world.address(n), HTTPS with cert/key. */
export function fakeOpenAI(world: DockerWorld, dir: string, id: string, tls: { cert: string; key: string }, n = 3): FakeOpenAI {
  const ip = world.address(n);
  const name = `cxe-e2e-${id}-openai`;
  const log = join(dir, 'requests.jsonl');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o777);
  return {
    ip,
    requests: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as LoggedRequest)
        : [],
    async start(script) {
      await docker(['rm', '-f', name]);
      writeFileSync(log, '');
      const config: FakeOpenAIConfig = {
        ip,
        port: 443,
        cert: '/api/cert.pem',
        key: '/api/key.pem',
        log: '/api/requests.jsonl',
        dump: '/api/bodies.jsonl',
        ...script,
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      writeFileSync(join(dir, 'cert.pem'), readFileSync(tls.cert));
      writeFileSync(join(dir, 'key.pem'), readFileSync(tls.key));
      const run = await docker([
        'run',
        '-d',
        '--name',
        name,
        '--label',
        `${E2E_LABEL}=${id}`,
        '--network',
        world.network,
        '--ip',
        ip,
        '-v',
        `${dir}:/api`,
        '-v',
        `${ROOT}:/repo:ro`,
        BASE_IMAGE,
        'node',
        '/repo/dist/test/fixtures/openai.js',
        '/api/config.json',
      ]);
      if (run.code !== 0) throw new Error(`fake OpenAI container: ${run.stderr}`);
      for (let i = 0; i < 50; i++) {
        const logs = await docker(['logs', name]);
        if (logs.stdout.includes('fake openai ready')) return;
        if (i === 49) throw new Error(`the fake OpenAI API did not start: ${logs.stdout}${logs.stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  };
}
