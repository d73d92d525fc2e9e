// The one edge where `docker` runs (execa). Argument lists come from image/args.ts.
import { execa, type Options } from 'execa';

export class DockerError extends Error {
  override readonly name = 'DockerError';
  readonly code = 'ERR_DOCKER';
  constructor(
    readonly args: string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    super(
      `docker ${args.slice(0, 3).join(' ')} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${stderr.trim().split('\n').slice(-3).join(' / ') || 'no output'}`,
    );
  }
}

export const DOCKER = process.env.CODEX_EGRESS_DOCKER || 'docker';

/**
 * Non-interactive docker runs in a session of its own (detached): a Ctrl-C at the terminal goes to the
 * foreground process group, and must not kill a `docker stop`/`rm` half-way through cleanup.
 */
const OWN_SESSION = { detached: true } as const;

/** Run docker and return its standard output (trimmed); throws DockerError on a non-zero exit. */
export async function docker(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await execa(DOCKER, args, {
    ...OWN_SESSION,
    reject: false,
    input: opts.input,
    timeout: opts.timeoutMs ?? 120_000,
    stripFinalNewline: true,
  });
  if (r.exitCode !== 0 || r.failed) throw new DockerError(args, r.exitCode, String(r.stderr || r.message || ''));
  return String(r.stdout);
}

/** Run docker and return exit code and output, never throwing for a non-zero exit. */
export async function dockerResult(args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
  const r = await execa(DOCKER, args, { ...OWN_SESSION, reject: false, input: opts.input, timeout: opts.timeoutMs ?? 120_000 });
  return {
    exitCode: r.exitCode ?? (r.timedOut ? 124 : 1),
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? ''),
    timedOut: !!r.timedOut,
  };
}

/** Run docker attached to this terminal (interactive Codex, shells, builds with visible progress). */
export async function dockerInherit(args: string[], extra: Options = {}): Promise<number> {
  const r = await execa(DOCKER, args, { reject: false, stdio: 'inherit', ...extra });
  return r.exitCode ?? 1;
}

/** Does the container/network/image exist? (`docker <kind> inspect`) */
export async function exists(kind: 'container' | 'network' | 'image', name: string): Promise<boolean> {
  return (await dockerResult([kind, 'inspect', '--format', '{{.Id}}', name], { timeoutMs: 30_000 })).exitCode === 0;
}
