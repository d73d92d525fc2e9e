// What the appliance commands share: exit codes, the project from --workdir, image names, output.
import { projectFor, type Project } from '../image/names.js';
import { checkWorkdir, statePaths, ProjectError, type StatePaths } from '../image/project.js';
import { DEFAULT_IMAGES, type ImageNames } from '../image/args.js';
import { dockerResult } from '../image/docker.js';
import { UsageError } from './args.js';
import { printableJson } from './printable.js';
import { parseSince } from './auditlog.js';

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
  --subnet CIDR           the internal network's /24 (default: derived from the directory, or the next
                          free one when that is in use; given: exactly that one)`;

export const workdirOptions = {
  workdir: { type: 'string' },
  subnet: { type: 'string' },
} as const;

export interface ProjectContext {
  project: Project;
  paths: StatePaths;
}

/** --since WHEN (logs, logs summary, suggest) as epoch ms, undefined when not given; a bad value is a usage error. */
export function sinceOption(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseSince(value, now);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
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
 * Signals while Codex has the terminal and while the appliance is taken down. While `attached`, a
 * SIGINT/SIGTERM/SIGHUP to us is ignored (the attached Codex gets the terminal's keys). Once cleaning
 * up, the first two signals are answered with a message and ignored; the third aborts, saying what is
 * left behind and that "codex-egress down" removes it. One set of listeners for the whole span: were
 * there a moment with none, a signal would kill us with the default action.
 */
export class SignalGuard {
  private phase: 'attached' | 'cleanup' = 'attached';
  private count = 0;
  private readonly signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  private readonly onSignal = (s: NodeJS.Signals) => {
    if (this.phase === 'attached') return;
    this.count++;
    if (this.count >= 3) {
      err(`codex-egress: cleanup aborted (${s}). Possibly left behind: ${this.leftover()}. "codex-egress down" removes it.`);
      process.exit(s === 'SIGINT' ? 130 : s === 'SIGTERM' ? 143 : 129);
    }
    err(
      `codex-egress: taking the appliance down, please wait (${3 - this.count === 1 ? 'one more signal aborts' : 'two more signals abort'} and leaves it behind)`,
    );
  };
  constructor(private readonly leftover: () => string) {
    for (const s of this.signals) process.on(s, this.onSignal);
  }
  cleanup(): void {
    this.phase = 'cleanup';
  }
  release(): void {
    for (const s of this.signals) process.off(s, this.onSignal);
  }
}

/** What `down` removes for a project, for the guard's message. */
export const leftoverOf = (p: Project) => `containers ${p.gateway} and ${p.sandbox}, network ${p.internalNetwork}`;

/** Run fn (the attached part) and then cleanup, under one SignalGuard. */
export async function guarded<T>(p: Project, fn: () => Promise<T>, cleanup: () => Promise<unknown>): Promise<T> {
  const guard = new SignalGuard(() => leftoverOf(p));
  try {
    let result: T;
    try {
      result = await fn();
    } finally {
      guard.cleanup();
      await cleanup();
    }
    return result;
  } finally {
    guard.release();
  }
}

/** Run fn while this process ignores SIGINT/SIGTERM/SIGHUP (no cleanup follows). */
export async function shielded<T>(fn: () => Promise<T>): Promise<T> {
  const guard = new SignalGuard(() => 'nothing');
  try {
    return await fn();
  } finally {
    guard.release();
  }
}
