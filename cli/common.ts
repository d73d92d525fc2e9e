// What the appliance commands share: exit codes, the project from --workdir, image names, output.
import { projectFor, type Project } from '../image/names.js';
import { checkWorkdir, statePaths, ProjectError, type StatePaths } from '../image/project.js';
import { DEFAULT_IMAGES, type ImageNames } from '../image/args.js';
import { dockerResult } from '../image/docker.js';
import { UsageError } from './args.js';
import { printableJson } from './printable.js';

/** Exit codes of every command (README: Exit codes). */
export const EXIT = {
  ok: 0,
  /** Docker or the appliance failed. */
  error: 1,
  usage: 2,
  /** A verify probe failed (up refuses to start Codex). */
  probeFailed: 3,
  /** The appliance is not running for this project. */
  notRunning: 4,
} as const;

export const WORKDIR_HELP = `  --workdir DIR           the project directory (default: the current directory)
  --subnet CIDR           the internal network's /24 (default: derived from the directory)`;

export const workdirOptions = {
  workdir: { type: 'string' },
  subnet: { type: 'string' },
} as const;

export interface ProjectContext {
  project: Project;
  paths: StatePaths;
}

/** The project for --workdir/--subnet, with the workdir checked (not /, not $HOME, inside WORKSPACE_ROOT_DIR). */
export function projectFrom(v: { workdir?: string; subnet?: string }): ProjectContext {
  try {
    const dir = checkWorkdir(v.workdir ?? process.cwd());
    const project = projectFor(dir, v.subnet);
    return { project, paths: statePaths(project) };
  } catch (err) {
    if (err instanceof ProjectError) throw new UsageError(err.message);
    if (/subnet/.test((err as Error).message)) throw new UsageError((err as Error).message);
    throw err;
  }
}

/** Images: --image / CODEX_EGRESS_IMAGE (the sandbox), --gateway-image / CODEX_EGRESS_GATEWAY_IMAGE. */
export function imagesFrom(v: { image?: string; 'gateway-image'?: string }, env: NodeJS.ProcessEnv = process.env): ImageNames {
  return {
    codex: v.image ?? env.CODEX_EGRESS_IMAGE ?? DEFAULT_IMAGES.codex,
    gateway: v['gateway-image'] ?? env.CODEX_EGRESS_GATEWAY_IMAGE ?? DEFAULT_IMAGES.gateway,
  };
}

export const IMAGE_HELP = `  --image IMAGE           the sandbox image (also CODEX_EGRESS_IMAGE; default ${DEFAULT_IMAGES.codex})
  --gateway-image IMAGE   the gateway image (also CODEX_EGRESS_GATEWAY_IMAGE; default ${DEFAULT_IMAGES.gateway})`;

export const imageOptions = {
  image: { type: 'string' },
  'gateway-image': { type: 'string' },
} as const;

/** Is the project's gateway container running? */
export async function gatewayRunning(p: Project): Promise<boolean> {
  const r = await dockerResult(['inspect', '--format', '{{.State.Running}}', p.gateway], { timeoutMs: 30_000 });
  return r.exitCode === 0 && r.stdout.trim() === 'true';
}

export const out = (s: string) => process.stdout.write(`${s}\n`);
export const err = (s: string) => process.stderr.write(`${s}\n`);
/** JSON output: valid JSON, with hidden characters (C1, bidi overrides, U+2028 …) as \\u escapes. */
export const json = (v: unknown) => out(printableJson(JSON.stringify(v, null, 2)));

export function notRunning(p: Project): number {
  err(`codex-egress: the appliance is not running for ${p.workdir} (${p.gateway}): run "codex-egress up"`);
  return EXIT.notRunning;
}

/**
 * Run fn while this process ignores SIGINT/SIGTERM/SIGHUP (the attached Codex gets the terminal's keys;
 * a signal to us must not skip the cleanup that follows).
 */
export async function shielded<T>(fn: () => Promise<T>): Promise<T> {
  const ignore = () => undefined;
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, ignore);
  try {
    return await fn();
  } finally {
    for (const s of signals) process.off(s, ignore);
  }
}
