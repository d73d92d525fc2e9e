// ATTACK4 (security review of `codex-egress secret`): the host runs each secret's --command with sh at
// every `up`. The definitions must not live where the gateway container can write: the gateway has the
// project's state directory read-write (root through the user's group, mode 0770), and it is the
// component that parses the sandbox's hostile traffic. A gateway that is taken over must not become
// code execution on the host at the next `up`.
import t from 'tap';
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { gatewayCreateArgs } from '../image/args.js';
import { credentialPaths } from '../image/credentials.js';
import { projectFor } from '../image/names.js';
import { prepareState, statePaths } from '../image/project.js';
import { resolveSecrets } from '../cli/secret.js';
import { cliInProcess } from './harness/cli.js';
import { tempDir } from './harness/world.js';

const tmp = tempDir('codex-egress-attack4-secrets-');
t.teardown(() => tmp.remove());

const within = (p: string, dir: string) => resolve(p) === resolve(dir) || resolve(p).startsWith(resolve(dir) + sep);

t.test('ATTACK4 secrets: the gateway cannot plant a --command the host runs at the next up', async (t) => {
  const state = join(tmp.path, 'state');
  const work = join(tmp.path, 'work');
  mkdirSync(work);
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  await prepareState(paths);
  const r = await cliInProcess(
    ['secret', 'set', 'github', '--host', 'api.github.com', '--command', 'echo ghp_ok', '--workdir', work],
    state,
  );
  t.equal(r.code, 0, r.stderr);
  const secrets = credentialPaths(paths).secrets;

  // What the gateway container gets read-write: its -v mounts, as `up` makes them (allowlistDir: paths.dir)
  const args = gatewayCreateArgs(projectFor(work), {
    image: 'img',
    allowlistDir: paths.dir,
    logDir: paths.logDir,
    firewall: false,
    gid: 0,
  });
  const mounts = args.flatMap((a, i) => (args[i - 1] === '-v' && !a.endsWith(':ro') ? [a.split(':')[0]!] : []));
  t.ok(mounts.includes(paths.dir), 'the gateway has the state directory');
  t.equal(statSync(paths.dir).mode & 0o070, 0o070, 'group-writable: the gateway (0:gid, no DAC_OVERRIDE) can add and rename entries');

  // The taken-over gateway replaces every secrets.json it can reach in its mounts (a rename in a
  // directory it may write: the file's own mode does not matter)
  const marker = join(tmp.path, 'host-pwned');
  const planted = JSON.stringify({ v: 1, secrets: [{ name: 'github', host: 'api.github.com', command: `touch ${marker}; echo x` }] });
  for (const m of mounts) {
    const target = within(secrets, m) ? secrets : join(m, 'secrets.json');
    writeFileSync(`${target}.planted`, planted);
    renameSync(`${target}.planted`, target);
  }
  // the host's next `up`
  await resolveSecrets(secrets).catch(() => undefined);
  t.notOk(existsSync(marker), 'no command planted by the gateway ran on the host');
  t.notOk(
    mounts.some((m) => within(secrets, m)),
    `the secrets file (${secrets}) is outside every directory the gateway can write`,
  );
});
