// `doctor` on machines that are not ready, through the real binary with a stand-in docker client (a
// script answering as docker does in each case): no Docker, no permission on its socket, the engine not
// running, a client newer than the engine, an old engine, a missing base image. Each: FAIL, one line of
// cause, one line of fix, exit 1.
import t from 'tap';
import { execa } from 'execa';
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from './harness/world.js';

const tmp = tempDir();
t.teardown(tmp.remove);

/** A docker stand-in: the client version, then what `docker version` of the server does, and which images exist. */
function fakeDocker(name: string, server: string, images: string[] = []): string {
  const path = join(tmp.path, name);
  writeFileSync(
    path,
    `#!/bin/sh
case "$*" in
  "version --format {{.Client.Version}}") echo 24.0.7 ;;
  "version --format {{.Server.Version}} {{.Server.APIVersion}}") ${server} ;;
  "image inspect --format {{.Id}} "*) for i in ${images.join(' ')}; do [ "$i" = "$5" ] && { echo sha256:1; exit 0; }; done; echo "Error: No such image: $5" >&2; exit 1 ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
`,
  );
  chmodSync(path, 0o755);
  return path;
}
const doctor = (docker: string, args: string[] = []) =>
  execa(process.execPath, [CLI, 'doctor', '--image', 'img-codex', '--gateway-image', 'img-gateway', ...args], {
    reject: false,
    timeout: 60_000,
    env: { CODEX_EGRESS_DOCKER: docker, NO_COLOR: '1' },
  });

const CASES: Array<[string, string, RegExp, RegExp, RegExp]> = [
  [
    'no docker',
    join(tmp.path, 'none'),
    /^FAIL  docker-client/m,
    /^ {6}cause: the docker command is not installed/m,
    /^ {6}fix: {3}install Docker: apt-get install docker\.io/m,
  ],
  [
    'no permission',
    fakeDocker(
      'perm',
      `echo 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: connect: permission denied' >&2; exit 1`,
    ),
    /^FAIL  docker-engine/m,
    /cause: you may not use the Docker socket/,
    /fix: {3}add yourself to the docker group .*or run as root/,
  ],
  [
    'not running',
    fakeDocker(
      'down',
      `echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1`,
    ),
    /^FAIL  docker-engine/m,
    /cause: the Docker engine is not running/,
    /fix: {3}start it: sudo systemctl start docker/,
  ],
  [
    'client too new',
    fakeDocker(
      'api',
      `echo 'Error response from daemon: client version 1.43 is too new. Maximum supported API version is 1.41' >&2; exit 1`,
    ),
    /^FAIL  docker-engine/m,
    /cause: the docker client is newer than the engine \(which speaks API 1\.41 at most\)/,
    /fix: {3}export DOCKER_API_VERSION=1\.41/,
  ],
  [
    'old engine',
    fakeDocker('old', `echo '19.03.15 1.40'`),
    /^FAIL  docker-engine +engine 19\.03\.15/m,
    /cause: engine 19\.03\.15 is older than 20\.10/,
    /fix: {3}upgrade the Docker engine to 20\.10 or newer/,
  ],
  [
    'no base image',
    fakeDocker('nobase', `echo '20.10.24 1.41'`),
    /^FAIL  base-image +node:26-trixie-slim missing/m,
    /cause: the base image node:26-trixie-slim is not on this machine/,
    /fix: {3}docker pull node:26-trixie-slim, or name a local one: codex-egress build --base IMAGE/,
  ],
];

t.test('each failure: one line of cause, one line of fix', async (t) => {
  for (const [what, docker, fail, cause, fix] of CASES) {
    const r = await doctor(docker);
    t.equal(r.exitCode, 1, `${what}: exit 1`);
    t.match(r.stdout, fail, `${what}: the failing check`);
    t.match(r.stdout, cause, `${what}: cause`);
    t.match(r.stdout, fix, `${what}: fix`);
    t.equal(
      r.stdout.split('\n').filter((l) => /^ {6}(cause|fix):/.test(l)).length,
      2 * r.stdout.split('\n').filter((l) => l.startsWith('FAIL')).length,
      `${what}: a cause and a fix per failure`,
    );
    t.equal(r.stderr, '', `${what}: nothing else said`);
  }
});

t.test('a local base image (--base) present: the images are only "not built yet"', async (t) => {
  const r = await doctor(fakeDocker('base', `echo '20.10.24 1.41'`, ['local-base']), ['--base', 'local-base']);
  t.equal(r.exitCode, 1);
  t.match(r.stdout, /^FAIL  image-codex +img-codex missing\n {6}cause: img-codex is not built yet\n {6}fix: {3}run "codex-egress build"/m);
  t.notMatch(r.stdout, /base-image/);
  const j = JSON.parse(
    (
      await doctor(fakeDocker('base2', `echo '20.10.24 1.41'`, ['local-base', 'img-codex', 'img-gateway']), [
        '--base',
        'local-base',
        '--json',
      ])
    ).stdout,
  ) as { checks: Array<{ id: string; ok: boolean }> };
  t.match(
    j.checks.filter((c) => c.id.startsWith('image-')),
    [{ ok: true }, { ok: true }],
    'present images pass',
  );
});
