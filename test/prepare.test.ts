// The test command's set-up (test/prepare.mjs): where it cannot install (not root), it names exactly
// what is missing and the command that gets it, and exits 1 without touching anything.
import t from 'tap';
import { execa } from 'execa';
import { mkdirSync, symlinkSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './harness/world.js';

const script = join(ROOT, 'test', 'prepare.mjs');

t.test('not root, commands missing: the exact packages and the command to install them', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.remove);
  chmodSync(tmp.path, 0o755);
  // A PATH holding only node and sh: dig, curl, openssl, ping are not on it.
  const bin = join(tmp.path, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const r = await execa('/usr/bin/setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', join(bin, 'node'), script], {
    reject: false,
    env: { PATH: bin, HOME: '/tmp' },
    extendEnv: false,
    timeout: 60_000,
  });
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /^test setup: missing .*\bdnsutils\b.*\bcurl\b/m, 'names the missing packages');
  t.match(r.stderr, /^ {2}fix: sudo apt-get install -y --no-install-recommends .*dnsutils/m, 'and how to get them');
  t.match(r.stderr, /and root/, 'and that root is needed');
  t.notMatch(r.stdout, /installing/, 'installs nothing');
});

t.test('not root, nothing missing: says root is needed', async (t) => {
  const r = await execa('/usr/bin/setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, script], {
    reject: false,
    timeout: 60_000,
  });
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /test setup: the tests need root .*\n {2}fix: run the tests as root/);
});

t.test('CODEX_EGRESS_TEST_PREPARE=0 skips it', async (t) => {
  const r = await execa(process.execPath, [script], { reject: false, env: { CODEX_EGRESS_TEST_PREPARE: '0' } });
  t.equal(r.exitCode, 0);
  t.match(r.stdout, /skipped/);
});
