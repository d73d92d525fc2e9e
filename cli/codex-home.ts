// --codex-home DIR: a Codex home of the user's choosing (e.g. a bot's `.codex-bot/` in the project)
// instead of the project's one in the state directory, persisted there with its auth.json, so a worker
// never needs the user's personal ~/.codex. `codex-egress login` fills it.
import { realpathSync } from 'node:fs';
import { UsageError } from './args.js';
import type { ProjectContext } from './common.js';
import { resolveTrusted, isWithin, realRoots, UnsafePathError } from '../image/paths.js';

export const CODEX_HOME_OPTION = { 'codex-home': { type: 'string' } } as const;

export const CODEX_HOME_HELP = `  --codex-home DIR        the Codex home (config, sessions, auth.json) is DIR, kept there, instead of
                          the project's in the state directory; no auth.json is looked up elsewhere
                          (only --auth-file). Fill it with "codex-egress login --codex-home DIR"`;

/**
 * The context with its Codex home replaced by DIR (resolved: no link inside the workdir along it;
 * it may not exist yet). DIR may not be the workdir or contain it. Pure apart from reading paths.
 */
export function withCodexHome(ctx: ProjectContext, dir: string | undefined): ProjectContext {
  if (dir === undefined) return ctx;
  let real: string;
  try {
    real = resolveTrusted(dir, { untrusted: realRoots([ctx.project.workdir]), what: '--codex-home', mayNotExist: true });
  } catch (e) {
    if (e instanceof UnsafePathError) throw new UsageError(e.message);
    throw e;
  }
  const workdir = realpathSync(ctx.project.workdir);
  if (isWithin(workdir, real))
    throw new UsageError(
      `--codex-home ${dir}: ${real} is the workdir or contains it: choose a directory of its own (e.g. ${workdir}/.codex-bot)`,
    );
  return { ...ctx, paths: { ...ctx.paths, codexHome: real } };
}
