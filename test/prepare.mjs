#!/usr/bin/env node
// The test command's set-up (`npm test` runs this first; .ci/run calls only `npm test`). Idempotent, with
// one line of progress per step: the Debian packages the tests use, the npm dependencies, a running
// Docker engine and the local base image (test/harness/docker-setup.sh). As root on Debian/Ubuntu it
// installs and starts what is missing; anywhere else it says exactly what is missing and how to get it,
// and exits 1. CODEX_EGRESS_TEST_PREPARE=0 skips it (the tests then find whatever is there).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Debian package → a command it provides (checked on PATH, so a non-Debian machine is judged too). */
export const PACKAGES = {
  iptables: 'iptables',
  ipset: 'ipset',
  iproute2: 'ip',
  procps: 'sysctl',
  dnsutils: 'dig',
  curl: 'curl',
  openssl: 'openssl',
  'iputils-ping': 'ping',
  'docker.io': 'dockerd',
  debootstrap: 'debootstrap',
  git: 'git', // the transparent Docker e2e makes its test repository with it
};

const say = (s) => process.stdout.write(`test setup: ${s}\n`);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', cwd: ROOT, ...opts });
const quiet = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore', cwd: ROOT });
const has = (command) =>
  quiet('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command} || test -x /sbin/${command}`]).status === 0;

function fail(what, fix) {
  process.stderr.write(`test setup: ${what}\n  fix: ${fix}\n`);
  process.exit(1);
}

if (process.env.CODEX_EGRESS_TEST_PREPARE === '0') {
  say('skipped (CODEX_EGRESS_TEST_PREPARE=0)');
  process.exit(0);
}
const root = process.getuid?.() === 0;
const apt = existsSync('/usr/bin/apt-get') && existsSync('/etc/debian_version');

// 1. Packages.
const missing = Object.entries(PACKAGES)
  .filter(([, cmd]) => !has(cmd))
  .map(([pkg]) => pkg);
if (missing.length === 0) say(`packages: all ${Object.keys(PACKAGES).length} present`);
else if (!root || !apt) {
  fail(
    `missing ${missing.join(' ')} (the network tests need them${root ? '' : ', and root'})`,
    apt
      ? `sudo apt-get install -y --no-install-recommends ${missing.join(' ')}, then run the tests as root`
      : `install the equivalents of the Debian packages ${missing.join(' ')} and run as root`,
  );
} else {
  say(`packages: installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (run('apt-get', ['update', '-q'], { env }).status !== 0)
    fail('apt-get update failed', 'check the machine reaches its Debian mirror, then run again');
  if (run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env }).status !== 0)
    fail(`apt-get install ${missing.join(' ')} failed`, "see apt-get's message above");
}
if (!root) fail('the tests need root (they create network namespaces and Docker networks)', 'run the tests as root (sudo npm test)');

// 2. npm dependencies (tsc, tap): present after `npm install`/`npm ci`.
if (existsSync(join(ROOT, 'node_modules', 'tap')) && existsSync(join(ROOT, 'node_modules', 'typescript'))) say('npm dependencies: present');
else {
  say('npm dependencies: npm ci');
  if (run('npm', ['ci', '--no-audit', '--no-fund']).status !== 0) fail('npm ci failed', "see npm's message above");
}

// 3. The Docker engine and the local base image (idempotent; builds the image once).
say('docker: engine and base image (test/harness/docker-setup.sh)');
if (run('bash', [join(ROOT, 'test', 'harness', 'docker-setup.sh')]).status !== 0) {
  fail(
    'the Docker engine or the base image could not be prepared',
    'see the message above; "codex-egress doctor" explains an engine problem',
  );
}
say('ready');
