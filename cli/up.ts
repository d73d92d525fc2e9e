// `codex-egress up`: gateway, then sandbox, then verify; then Codex (or a shell) in this terminal.
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { parse, UsageError } from './args.js';
import {
  EXIT,
  WORKDIR_HELP,
  IMAGE_HELP,
  workdirOptions,
  imageOptions,
  projectFrom,
  imagesFrom,
  guarded,
  out,
  err,
  json,
  type ProjectContext,
} from './common.js';
import { up, verify, down, firstAllowedHost, codexMode, otherRunningWorkdirs, type ProbeResult } from '../image/appliance.js';
import {
  GATEWAY_FIREWALL_DEFAULT,
  GATEWAY_TRANSPARENT_DEFAULT,
  DEFAULT_IMAGES,
  sandboxExecArgs,
  codexCommand,
  apiKeyEnv,
  containerPathOf,
  SANDBOX_CODEX_HOME,
  type Mount,
  type CodexSandboxMode,
} from '../image/args.js';
import { buildImages } from '../image/build.js';
import { CODEX_VERSION } from '../image/context.js';
import { dockerInherit, exists } from '../image/docker.js';
import {
  prepareState,
  seedCodexHome,
  findAuthFile,
  sandboxUser,
  workdirOwner,
  sandboxWritable,
  checkStateOutsideWorkdir,
  prepareAuthMountPoint,
  prepareSessionsMountPoint,
  giveCodexHome,
  checkWorkdirPlacement,
  ProjectError,
  type SandboxUser,
} from '../image/project.js';
import { resolveTrusted, isWithin } from '../image/paths.js';
import { printable } from './printable.js';
import { withCodexHome } from './codex-home.js';
import {
  RUNNER_OPTIONS,
  RUNNER_HELP,
  checkRunnerFlags,
  runtimeRefusal,
  codexBinMount,
  writableOutside,
  confirmWritable,
} from './runner-options.js';
import type { ResolvedMode } from '../image/credentials.js';
import { prepareCredentials, keyEnvFor, forgetCredentials, CREDENTIALS_HELP, CREDENTIALS_OPTIONS } from './credentials.js';
import { PRESET_NAMES, isPresetName } from '../proxy/policy/presets.js';

export const INIT_SCRIPT_PATH = '/opt/codex-egress/init.sh';

/** Options shared by `up` and `exec` (everything that shapes the appliance). */
export const APPLIANCE_OPTIONS = {
  ...workdirOptions,
  ...imageOptions,
  allow: { type: 'string', multiple: true },
  'no-defaults': { type: 'boolean' },
  preset: { type: 'string' },
  upstream: { type: 'string', multiple: true },
  'egress-network': { type: 'string' },
  firewall: { type: 'boolean' },
  'no-firewall': { type: 'boolean' },
  transparent: { type: 'boolean' },
  'no-transparent': { type: 'boolean' },
  'auth-file': { type: 'string' },
  'sessions-path': { type: 'string' },
  'read-only': { type: 'string', multiple: true },
  'git-readonly': { type: 'boolean' },
  'init-script': { type: 'string' },
  gpus: { type: 'string' },
  'verify-host': { type: 'string' },
  'codex-sandbox': { type: 'boolean' },
  autonomous: { type: 'boolean' },
  user: { type: 'string' },
  detach: { type: 'boolean' },
  json: { type: 'boolean' },
  ...RUNNER_OPTIONS,
  ...CREDENTIALS_OPTIONS,
} as const;

export const APPLIANCE_HELP = `${WORKDIR_HELP}
${IMAGE_HELP}
  --allow RULE            allow a rule for this run, repeatable (persist rules with "codex-egress allow")
  --no-defaults           leave out the built-in OpenAI rules
  --preset NAME           a first-start allowlist: locked (the OpenAI defaults only, the default) or dev
                          (plus package registries and source hosts: npm, PyPI, crates, Go, GitHub, …);
                          shown by "domains" as source preset; deny rules still win
  --upstream IP[:PORT]    the gateway's upstream DNS resolver, repeatable (default: Docker's, via the egress network)
  --egress-network NAME   an existing Docker network for the gateway's way out (default: one made per project)
  --firewall | --no-firewall  the gateway's kernel firewall (default: ${GATEWAY_FIREWALL_DEFAULT ? 'on' : 'off'})
  --transparent | --no-transparent  transparent egress by name: tools that ignore the proxy variables reach
                          allowed names on their allowed TCP ports through the gateway (default: ${GATEWAY_TRANSPARENT_DEFAULT ? 'on' : 'off'},
                          with the firewall; README: transparent mode)
  --auth-file FILE        Codex auth.json, mounted read-only (default: CODEX_AUTH_FILE, CODEX_CONFIG_DIR, ~/.codex, ~/.config/codex)
  --sessions-path DIR     keep Codex sessions here (default: the project's Codex home)
  --read-only PATH        mount PATH read-only at the same path, repeatable
  --git-readonly          mount the workdir's .git read-only
  --init-script FILE      run FILE (sh) in the sandbox before Codex starts
  --gpus SPEC             passed to docker (--gpus)
  --verify-host NAME      the allowed host verify must reach (default: the first exact rule)
  --codex-sandbox         keep Codex's own (bubblewrap) sandbox working inside the container: relaxes
                          the sandbox's seccomp and AppArmor profiles (README: Codex's sandbox). Default:
                          Codex's sandbox off (sandbox_mode="danger-full-access"), the appliance is the sandbox
  --autonomous            no approval prompts (approval_policy="never"); default: your Codex config decides
  --user UID[:GID]        the sandbox user (default: the workdir's owner; 0 = root, only when asked)
  --detach                leave the appliance running and return
  --json                  print the verify results as JSON
${RUNNER_HELP}
${CREDENTIALS_HELP}
Arguments after -- go to Codex after these defaults, so they win (e.g. -- --sandbox workspace-write).
CODEX_API_KEY (or OPENAI_API_KEY) is given to the gateway, Codex gets a sentinel (--credentials mount: the key itself).`;

export const UP_USAGE = `Usage: codex-egress up [options] [-- CODEX_ARGS...]

Starts the appliance for the project: an internal network, the gateway (healthy before anything else
starts), the sandbox (the default images are built on first use); runs "verify" and refuses to start Codex if a probe fails; then runs Codex in
this terminal and takes everything down when it exits (unless --detach).

Options:
${APPLIANCE_HELP}
  --shell                 a shell in the sandbox instead of Codex
  -h, --help              this help

Exit codes: Codex's own once it ran; 0 detached and verified; 1 error; 2 usage; 3 a probe failed.`;

type Values = ReturnType<typeof parse<typeof APPLIANCE_OPTIONS>>['values'];

/** The Codex sandbox mode in force, in words (verify prints it). */
export function describeMode(m: { mode: string; user?: string } | undefined): string {
  if (!m) return 'unknown (no sandbox container)';
  const what =
    m.mode === 'inner'
      ? "Codex's own sandbox ON inside the container (up --codex-sandbox: seccomp and AppArmor relaxed)"
      : m.mode === 'off'
        ? 'Codex\'s own sandbox OFF (sandbox_mode="danger-full-access"): the container and the gateway are the sandbox'
        : `unknown mode "${m.mode}"`;
  return `${what}; sandbox user ${m.user ?? '?'}${m.user?.startsWith('0:') ? ' (ROOT)' : ''}`;
}

export function printProbes(results: ProbeResult[], asJson: boolean, mode?: { mode: string; user?: string }): void {
  if (asJson) {
    json({ ok: results.every((r) => r.ok), probes: results, codexSandbox: mode?.mode ?? null, sandboxUser: mode?.user ?? null });
    return;
  }
  const width = Math.max(...results.map((r) => r.id.length));
  for (const r of results) out(`${r.ok ? 'PASS' : 'FAIL'}  ${printable(r.id.padEnd(width))}  ${printable(String(r.detail))}`);
  out(`MODE  ${printable(describeMode(mode))}`);
}

const isLink = (path: string) => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
};

/** The `codex` command for up/exec: our sandbox defaults, then the user's arguments (which win). */
export function codexArgv(v: Values, sub: string[], userArgs: string[]): string[] {
  return codexCommand({ mode: v['codex-sandbox'] ? 'inner' : 'off', autonomous: !!v.autonomous, sub, userArgs });
}

/** API keys for Codex: names for `docker exec -e`, values only in docker's environment. */
export function keyEnv(): { names: string[]; env: Record<string, string> } {
  const k = apiKeyEnv(process.env);
  return { names: k.names, env: k.values };
}

/** Bring the appliance up and verify it; returns the project, or an exit code when it refused. */
export async function bringUp(v: Values): Promise<(ProjectContext & { credentials?: ResolvedMode }) | number> {
  if (v.firewall && v['no-firewall']) throw new UsageError('--firewall and --no-firewall contradict each other');
  checkRunnerFlags(v);
  if (v.transparent && v['no-transparent']) throw new UsageError('--transparent and --no-transparent contradict each other');
  if (v.transparent && v['no-firewall'])
    throw new UsageError("--transparent needs the gateway's firewall (its pool addresses need NET_ADMIN): drop --no-firewall");
  if (v.preset !== undefined && !isPresetName(v.preset))
    throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(', ')}, not "${v.preset}"`);
  const base = projectFrom(v);
  const ctx = withCodexHome(base, v['codex-home']);
  let p = ctx.project;
  const { paths } = ctx;
  const images = imagesFrom(v);
  const missing = [];
  for (const image of [images.gateway, images.codex]) if (!(await exists('image', image))) missing.push(image);
  if (missing.length) {
    // First run with the default images: build them (visible progress). Named images must exist.
    const defaults = missing.every((i) => i === DEFAULT_IMAGES.gateway || i === DEFAULT_IMAGES.codex);
    if (!defaults) {
      err(`codex-egress up: image ${missing.join(', ')} not found: run "codex-egress build" first`);
      return EXIT.error;
    }
    err(`codex-egress: ${missing.join(' and ')} not built yet: building (once; "codex-egress build" rebuilds)`);
    await buildImages(
      {
        images,
        codex: { version: CODEX_VERSION },
        only: missing.length === 2 ? undefined : missing[0] === images.gateway ? 'gateway' : 'codex',
      },
      (s) => err(`codex-egress: ${s}`),
    );
  }
  const mode: CodexSandboxMode = v['codex-sandbox'] ? 'inner' : 'off';
  let user: SandboxUser;
  try {
    checkStateOutsideWorkdir(p, paths);
    checkWorkdirPlacement(p.workdir);
    user = sandboxUser(workdirOwner(p.workdir), v.user);
  } catch (e) {
    if (e instanceof ProjectError) throw new UsageError(e.message);
    throw e;
  }
  // Nothing of this project may run while the host checks and writes paths the sandbox can change.
  for (const c of [p.gateway, p.sandbox]) {
    if (await exists('container', c)) {
      err(`codex-egress up: ${c} already exists: run "codex-egress down" first (or "status")`);
      return EXIT.error;
    }
  }
  // Nor may another project's sandbox run on this workdir (the same directory under another name) or
  // on a directory around or inside it: it could change this one's paths between the checks and the mounts.
  const mine = realpathSync(p.workdir);
  for (const o of await otherRunningWorkdirs(p)) {
    let theirs = o.workdir;
    try {
      theirs = realpathSync(o.workdir);
    } catch {
      /* gone: compared as labelled */
    }
    if (isWithin(mine, theirs) || isWithin(theirs, mine)) {
      err(
        `codex-egress up: project ${printable(o.name)} runs on ${printable(o.workdir)}, which ${isWithin(mine, theirs) ? 'contains' : 'is inside'} this workdir: its sandbox could change the paths mounted here (run "codex-egress down --workdir ${printable(o.workdir)}" first)`,
      );
      return EXIT.error;
    }
  }
  const sessionsPath = v['sessions-path']
    ? resolveTrusted(v['sessions-path'], { untrusted: sandboxWritable(p, paths), what: '--sessions-path' })
    : undefined;
  // Writable mounts the user chose outside the workdir: a yes first (--yes, or asked on a terminal).
  const chosen = [
    ...(sessionsPath ? [{ path: sessionsPath, what: '--sessions-path' }] : []),
    ...(v['codex-home'] ? [{ path: paths.codexHome, what: '--codex-home' }] : []),
  ];
  // The state directory (allowlist, audit log, runs, credentials) is never the sandbox's: no yes makes it so.
  // compared as given and as real paths (a state directory reached through a link is the same directory)
  const real = (x: string) => {
    try {
      return realpathSync(x);
    } catch {
      return x;
    }
  };
  const overlapsState = (x: string) =>
    [x, real(x)].some(
      (y) =>
        [base.paths.dir, real(base.paths.dir)].some((d) => isWithin(y, d)) ||
        [base.paths.base, real(base.paths.base)].some((b) => isWithin(b, y)),
    );
  for (const c of chosen) {
    if (c.path !== base.paths.codexHome && real(c.path) !== real(base.paths.codexHome) && overlapsState(c.path)) {
      throw new UsageError(
        `${c.what} ${c.path}: overlaps the project's state directory ${base.paths.dir} (its allowlist, audit log and credentials): choose a directory outside it`,
      );
    }
  }
  await confirmWritable(writableOutside(mine, chosen), !!v.yes, (s) => err(`codex-egress: ${s}`));
  const refusal = await runtimeRefusal(v.runtime);
  if (refusal) {
    err(`codex-egress up: ${refusal}`);
    return EXIT.error;
  }
  // Every bind source: resolved one component at a time, a link inside what the sandbox can write refused.
  const untrusted = sandboxWritable(p, paths, sessionsPath);
  const trusted = (path: string, what: string) => resolveTrusted(path, { untrusted, what });
  const mounts: Mount[] = [];
  // A read-only path inside a read-write mount goes over that mount's copy of it (not beside it).
  const rw: Mount[] = [
    { host: realpathSync(p.workdir), container: p.workdir },
    ...(existsSync(paths.codexHome) ? [{ host: realpathSync(paths.codexHome), container: SANDBOX_CODEX_HOME }] : []),
    ...(sessionsPath ? [{ host: sessionsPath, container: `${SANDBOX_CODEX_HOME}/sessions` }] : []),
  ];
  for (const path of v['read-only'] ?? []) {
    const real = trusted(path, '--read-only');
    mounts.push({ host: real, container: containerPathOf(real, rw), readOnly: true });
  }
  if (v['git-readonly']) {
    if (!existsSync(join(p.workdir, '.git')) && !isLink(join(p.workdir, '.git')))
      throw new UsageError(`--git-readonly: ${p.workdir}/.git does not exist`);
    const real = trusted(join(p.workdir, '.git'), '--git-readonly');
    mounts.push({ host: real, container: join(p.workdir, '.git'), readOnly: true });
  }
  if (v['init-script']) {
    mounts.push({ host: trusted(v['init-script'], '--init-script'), container: INIT_SCRIPT_PATH, readOnly: true });
  }
  if (v['codex-bin']) mounts.push(await codexBinMount(trusted(v['codex-bin'], '--codex-bin'), images.codex));
  const config = v.config ? trusted(v.config, '--config') : undefined;
  let authFile: string | undefined;
  try {
    // With --codex-home, auth.json is the one kept there: no personal one is looked up (only --auth-file).
    authFile = v['codex-home'] && !v['auth-file'] ? undefined : findAuthFile(v['auth-file']);
  } catch (e) {
    if (e instanceof ProjectError) throw new UsageError(e.message);
    throw e;
  }
  if (authFile) authFile = trusted(authFile, 'auth.json');
  // every mount is checked against the credentials directory, the read-write ones too (a --codex-home or
  // --sessions-path that is, or holds, the state directory would show the real values to the sandbox)
  const cred = await prepareCredentials(v, p, paths, authFile, [
    ...mounts,
    ...rw,
    { host: paths.codexHome, container: SANDBOX_CODEX_HOME },
  ]);
  if (!cred.plan.mountAuthFile) authFile = undefined;
  if (cred.mount) mounts.push(cred.mount);
  if (user.uid === 0) err('codex-egress: WARNING: the sandbox runs as ROOT (uid 0), as --user asked: files Codex creates are root-owned');
  await prepareState(base.paths); // the state directory (and its own Codex home, unused with --codex-home)
  const root = process.getuid?.() === 0;
  await seedCodexHome(paths.codexHome, process.env, undefined, { owner: root ? user : undefined, untrusted, config }).catch(
    (e: unknown) => {
      throw e instanceof ProjectError ? new UsageError(e.message) : e;
    },
  );
  await prepareAuthMountPoint(paths.codexHome, user, !!authFile);
  await prepareSessionsMountPoint(paths.codexHome, user, !!sessionsPath);
  if (root) await giveCodexHome(paths, user);
  else if (process.getuid?.() !== user.uid)
    err(
      `codex-egress: note: the sandbox runs as ${user.uid}:${user.gid} (the workdir's owner) but only root can give it the Codex home ${paths.codexHome}`,
    );
  if (existsSync(paths.legacyCodexHome) || isLink(paths.legacyCodexHome)) {
    err(
      `codex-egress: note: ${paths.legacyCodexHome} is no longer used (the Codex home is now ${paths.codexHome}); move sessions from it by hand if you want them`,
    );
  }
  const firewall = v.firewall ? true : v['no-firewall'] ? false : GATEWAY_FIREWALL_DEFAULT;
  const log = (s: string) => err(`codex-egress: ${s}`);
  // The /24 it got (a free one unless --subnet): every later step uses its addresses.
  p = ctx.project = await up(
    {
      project: p,
      subnetFixed: v.subnet !== undefined,
      egressNetwork: v['egress-network'],
      gateway: {
        image: images.gateway,
        allowlistDir: paths.dir,
        logDir: paths.logDir,
        firewall,
        gid: process.getgid?.() ?? 0,
        upstreams: v.upstream,
        allow: v.allow,
        noDefaults: v['no-defaults'],
        preset: v.preset,
        envAllowed: process.env.OPENAI_ALLOWED_DOMAINS,
        transparent: v.transparent ? true : v['no-transparent'] ? false : GATEWAY_TRANSPARENT_DEFAULT && firewall,
        extraArgs: cred.gatewayArgs,
      },
      sandbox: {
        image: images.codex,
        uid: user.uid,
        gid: user.gid,
        codexSandbox: mode,
        codexHome: paths.codexHome,
        authFile,
        sessionsPath,
        mounts,
        gpus: v.gpus,
        shmSize: v['shm-size'],
        runtime: v.runtime,
        env: cred.plan.sandboxEnv,
        credentials: cred.plan.mode,
        trustCa: !!cred.mount,
      },
    },
    log,
  ).catch((e: unknown) => {
    forgetCredentials(paths);
    throw e;
  });
  for (const n of cred.plan.notes) log(`credentials: ${n}`);
  log(`allowlist ${paths.allowlist} · audit log ${paths.auditLog} · Codex home ${paths.codexHome}`);
  const results = await verify(p, { allowedHost: v['verify-host'] ?? (await firstAllowedHost(paths.effective)) });
  printProbes(results, !!v.json, await codexMode(p));
  if (!results.every((r) => r.ok)) {
    err('codex-egress up: a verify probe failed: refusing to start Codex; taking the appliance down');
    await down(p, log);
    forgetCredentials(paths);
    return EXIT.probeFailed;
  }
  if (v['init-script']) {
    log(`running the init script`);
    const r = await dockerInherit(sandboxExecArgs(p, ['sh', INIT_SCRIPT_PATH]));
    if (r !== 0) {
      err(`codex-egress up: the init script failed (exit ${r}); taking the appliance down`);
      await down(p, log);
      forgetCredentials(paths);
      return EXIT.error;
    }
  }
  return { ...ctx, credentials: cred.plan.mode };
}

export async function upCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, { ...APPLIANCE_OPTIONS, shell: { type: 'boolean' } }, true);
  const r = await bringUp(v);
  if (typeof r === 'number') return r;
  const p = r.project;
  if (v.detach) {
    err(`codex-egress: up and verified. Codex: docker exec -it ${p.sandbox} ${codexArgv(v, [], []).join(' ')} · stop: codex-egress down`);
    return EXIT.ok;
  }
  const tty = !!process.stdin.isTTY && !!process.stdout.isTTY;
  const command = v.shell ? ['bash'] : codexArgv(v, [], positionals);
  const keys = await keyEnvFor(p, r.credentials);
  return guarded(
    p,
    () => dockerInherit(sandboxExecArgs(p, command, { tty, stdin: true, envNames: keys.names }), { env: keys.env }),
    () => {
      err(`codex-egress: Codex exited: taking the appliance down (${p.name})`);
      return down(p, (s) => err(`codex-egress: ${s}`)).finally(() => forgetCredentials(r.paths));
    },
  );
}
