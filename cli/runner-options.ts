// The runner's appliance options (issue 14), shared by `up` and `exec`: --config, --codex-bin,
// --shm-size, --runtime, --yes, and the confirmation for writable mounts outside the workdir.
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { UsageError } from './args.js';
import { binaryKind, binaryFits } from '../image/binary.js';
import { checkRuntimeName, checkShmSize, engineRuntimes, imagePlatform, runtimeStatus } from '../image/engine.js';
import { isWithin } from '../image/paths.js';
import type { Mount } from '../image/args.js';
import { CODEX_HOME_OPTION, CODEX_HOME_HELP } from './codex-home.js';

/** Where --codex-bin goes in the sandbox: over the image's `codex` (a link into /opt/codex, followed by Docker). */
export const CODEX_BIN_PATH = '/usr/local/bin/codex';

export const RUNNER_OPTIONS = {
  config: { type: 'string' },
  'codex-bin': { type: 'string' },
  'shm-size': { type: 'string' },
  runtime: { type: 'string' },
  yes: { type: 'boolean' },
  ...CODEX_HOME_OPTION,
} as const;

export const RUNNER_HELP = `  --config FILE|DIR       Codex's config.toml (and DIR/prompts) from here; replaces the project's
                          config.toml. Default search: CODEX_CONFIG_DIR, ~/.codex, ~/.config/codex
  --codex-bin PATH        mount this host Codex binary read-only over the image's (a Linux binary
                          for the image's architecture, or a script; "doctor --codex-bin" checks it)
  --shm-size SIZE         the sandbox's /dev/shm size, passed to docker (e.g. 2g for GPU runs)
  --runtime NAME          the sandbox's container runtime (e.g. runsc, gVisor): must be registered
                          with the engine ("doctor --runtime NAME" checks)
  --yes                   confirm writable mounts outside the workdir without asking
${CODEX_HOME_HELP}`;

type Values = { config?: string; 'codex-bin'?: string; 'shm-size'?: string; runtime?: string; yes?: boolean };

/** Flag syntax, before anything runs. */
export function checkRunnerFlags(v: Values): void {
  for (const e of [
    v['shm-size'] !== undefined ? checkShmSize(v['shm-size']) : undefined,
    v.runtime !== undefined ? checkRuntimeName(v.runtime) : undefined,
  ]) {
    if (e) throw new UsageError(e);
  }
}

/** The runtime must be registered with the engine: an error message otherwise. */
export async function runtimeRefusal(runtime: string | undefined): Promise<string | undefined> {
  if (runtime === undefined) return undefined;
  const s = runtimeStatus(runtime, await engineRuntimes());
  return s.ok ? undefined : s.detail;
}

/** The first bytes of a file (the host's own: resolved by the caller), for binaryKind. */
export function fileHead(path: string, n = 64): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    return b.subarray(0, readSync(fd, b, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/** Is `real` (resolved) a Codex binary that can run in `image`? A sentence; ok false says why not. */
export async function codexBinCheck(real: string, image: string): Promise<{ ok: boolean; detail: string }> {
  const st = statSync(real);
  if (!st.isFile()) return { ok: false, detail: `${real} is not a regular file` };
  if ((st.mode & 0o111) === 0) return { ok: false, detail: `${real} is not executable` };
  const platform = await imagePlatform(image);
  if (!platform) return { ok: false, detail: `image ${image} not found: cannot compare architectures` };
  const f = binaryFits(binaryKind(fileHead(real)), platform);
  return { ok: f.ok, detail: `${real}: ${f.detail}` };
}

/** The --codex-bin mount (read-only over the image's codex), or a usage error saying why it cannot run. */
export async function codexBinMount(real: string, image: string): Promise<Mount> {
  const c = await codexBinCheck(real, image);
  if (!c.ok) throw new UsageError(`--codex-bin ${c.detail}`);
  return { host: real, container: CODEX_BIN_PATH, readOnly: true };
}

export interface WritableChoice {
  path: string;
  what: string;
}

/** The writable mounts the user chose that lie outside the workdir (real paths compared). Pure. */
export function writableOutside(workdirReal: string, chosen: WritableChoice[]): WritableChoice[] {
  return chosen.filter((c) => !isWithin(c.path, workdirReal));
}

/**
 * Writable mounts outside the workdir need a yes: --yes, or an answer on a terminal. Without a terminal
 * and without --yes: refused (a usage error naming each path). Says what becomes writable either way.
 */
export async function confirmWritable(
  outside: WritableChoice[],
  yes: boolean,
  log: (s: string) => void,
  tty = !!process.stdin.isTTY && !!process.stderr.isTTY,
): Promise<void> {
  if (!outside.length) return;
  const list = outside.map((o) => `${o.path} (${o.what})`).join(', ');
  const what = `the sandbox will be able to change ${list}: outside the workdir`;
  if (yes) {
    log(`note: ${what} (--yes)`);
    return;
  }
  if (!tty) throw new UsageError(`${what}. Confirm with --yes (no terminal to ask on)`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const a = await rl.question(`codex-egress: ${what}. Continue? [y/N] `);
    if (!/^y(es)?$/i.test(a.trim())) throw new UsageError('not confirmed: nothing was started');
  } finally {
    rl.close();
  }
}
