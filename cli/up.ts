// `codex-egress up`: gateway, then sandbox, then verify; then Codex (or a shell) in this terminal.
import { existsSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse, UsageError } from './args.js';
import { EXIT, WORKDIR_HELP, IMAGE_HELP, workdirOptions, imageOptions, projectFrom, imagesFrom, shielded, out, err, json, type ProjectContext } from './common.js';
import { up, verify, down, firstAllowedHost, type ProbeResult } from '../image/appliance.js';
import { GATEWAY_FIREWALL_DEFAULT, DEFAULT_IMAGES, sandboxExecArgs, type Mount } from '../image/args.js';
import { buildImages } from '../image/build.js';
import { CODEX_VERSION } from '../image/context.js';
import { dockerInherit, exists } from '../image/docker.js';
import { prepareState, seedCodexHome, findAuthFile, sandboxUser, ProjectError } from '../image/project.js';
import { printable } from './printable.js';

export const INIT_SCRIPT_PATH = '/opt/codex-egress/init.sh';

/** Options shared by `up` and `exec` (everything that shapes the appliance). */
export const APPLIANCE_OPTIONS = {
  ...workdirOptions,
  ...imageOptions,
  allow: { type: 'string', multiple: true },
  'no-defaults': { type: 'boolean' },
  upstream: { type: 'string', multiple: true },
  'egress-network': { type: 'string' },
  firewall: { type: 'boolean' },
  'no-firewall': { type: 'boolean' },
  'auth-file': { type: 'string' },
  'sessions-path': { type: 'string' },
  'read-only': { type: 'string', multiple: true },
  'git-readonly': { type: 'boolean' },
  'init-script': { type: 'string' },
  gpus: { type: 'string' },
  'verify-host': { type: 'string' },
  detach: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

export const APPLIANCE_HELP = `${WORKDIR_HELP}
${IMAGE_HELP}
  --allow RULE            allow a rule for this run, repeatable (persist rules with "codex-egress allow")
  --no-defaults           leave out the built-in OpenAI rules
  --upstream IP[:PORT]    the gateway's upstream DNS resolver, repeatable (default: Docker's, via the egress network)
  --egress-network NAME   an existing Docker network for the gateway's way out (default: one made per project)
  --firewall | --no-firewall  the gateway's kernel firewall (default: ${GATEWAY_FIREWALL_DEFAULT ? 'on' : 'off'})
  --auth-file FILE        Codex auth.json, mounted read-only (default: CODEX_AUTH_FILE, CODEX_CONFIG_DIR, ~/.codex, ~/.config/codex)
  --sessions-path DIR     keep Codex sessions here (default: the project's Codex home)
  --read-only PATH        mount PATH read-only at the same path, repeatable
  --git-readonly          mount the workdir's .git read-only
  --init-script FILE      run FILE (sh) in the sandbox before Codex starts
  --gpus SPEC             passed to docker (--gpus)
  --verify-host NAME      the allowed host verify must reach (default: the first exact rule)
  --detach                leave the appliance running and return
  --json                  print the verify results as JSON`;

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

export function printProbes(results: ProbeResult[], asJson: boolean): void {
  if (asJson) {
    json({ ok: results.every((r) => r.ok), probes: results });
    return;
  }
  const width = Math.max(...results.map((r) => r.id.length));
  for (const r of results) out(`${r.ok ? 'PASS' : 'FAIL'}  ${printable(r.id.padEnd(width))}  ${printable(String(r.detail))}`);
}

/** Bring the appliance up and verify it; returns the project, or an exit code when it refused. */
export async function bringUp(v: Values): Promise<ProjectContext | number> {
  if (v.firewall && v['no-firewall']) throw new UsageError('--firewall and --no-firewall contradict each other');
  const ctx = projectFrom(v);
  const { project: p, paths } = ctx;
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
    await buildImages({ images, codex: { version: CODEX_VERSION }, only: missing.length === 2 ? undefined : missing[0] === images.gateway ? 'gateway' : 'codex' }, (s) => err(`codex-egress: ${s}`));
  }
  const mounts: Mount[] = [];
  for (const path of v['read-only'] ?? []) {
    const abs = resolve(path);
    if (!existsSync(abs)) throw new UsageError(`--read-only ${path}: no such file or directory`);
    mounts.push({ host: abs, container: abs, readOnly: true });
  }
  if (v['git-readonly']) {
    if (!existsSync(join(p.workdir, '.git'))) throw new UsageError(`--git-readonly: ${p.workdir}/.git does not exist`);
    mounts.push({ host: join(p.workdir, '.git'), container: join(p.workdir, '.git'), readOnly: true });
  }
  if (v['init-script']) {
    if (!existsSync(v['init-script'])) throw new UsageError(`--init-script ${v['init-script']}: no such file`);
    mounts.push({ host: resolve(v['init-script']), container: INIT_SCRIPT_PATH, readOnly: true });
  }
  let authFile: string | undefined;
  try {
    authFile = findAuthFile(v['auth-file']);
  } catch (e) {
    if (e instanceof ProjectError) throw new UsageError(e.message);
    throw e;
  }
  await prepareState(paths);
  await seedCodexHome(paths.codexHome);
  const user = sandboxUser();
  if (process.getuid?.() === 0) await chown(paths.codexHome, user.uid, user.gid); // the sandbox is never root
  const firewall = v.firewall ? true : v['no-firewall'] ? false : GATEWAY_FIREWALL_DEFAULT;
  const log = (s: string) => err(`codex-egress: ${s}`);
  await up(
    {
      project: p,
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
        envAllowed: process.env.OPENAI_ALLOWED_DOMAINS,
      },
      sandbox: {
        image: images.codex,
        ...user,
        codexHome: paths.codexHome,
        authFile,
        sessionsPath: v['sessions-path'] ? resolve(v['sessions-path']) : undefined,
        mounts,
        gpus: v.gpus,
      },
    },
    log,
  );
  log(`allowlist ${paths.allowlist} · audit log ${paths.auditLog}`);
  const results = await verify(p, { allowedHost: v['verify-host'] ?? (await firstAllowedHost(paths.effective)) });
  printProbes(results, !!v.json);
  if (!results.every((r) => r.ok)) {
    err('codex-egress up: a verify probe failed: refusing to start Codex; taking the appliance down');
    await down(p, log);
    return EXIT.probeFailed;
  }
  if (v['init-script']) {
    log(`running the init script`);
    const r = await dockerInherit(sandboxExecArgs(p, ['sh', INIT_SCRIPT_PATH]));
    if (r !== 0) {
      err(`codex-egress up: the init script failed (exit ${r}); taking the appliance down`);
      await down(p, log);
      return EXIT.error;
    }
  }
  return ctx;
}

export async function upCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, { ...APPLIANCE_OPTIONS, shell: { type: 'boolean' } }, true);
  const r = await bringUp(v);
  if (typeof r === 'number') return r;
  const p = r.project;
  if (v.detach) {
    err(`codex-egress: up and verified. Codex: docker exec -it ${p.sandbox} codex · stop: codex-egress down`);
    return EXIT.ok;
  }
  const tty = !!process.stdin.isTTY && !!process.stdout.isTTY;
  const command = v.shell ? ['bash'] : ['codex', ...positionals];
  const code = await shielded(() => dockerInherit(sandboxExecArgs(p, command, { tty, stdin: true })));
  await down(p, (s) => err(`codex-egress: ${s}`));
  return code;
}

