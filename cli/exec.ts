// `codex-egress exec "PROMPT"`: run `codex exec` non-interactively in the sandbox; write run.log and exit.json.
import { createWriteStream, existsSync, constants as fsc } from 'node:fs';
import { mkdir, readFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse, UsageError } from './args.js';
import { projectFrom, gatewayRunning, guarded, err, type ProjectContext } from './common.js';
import type { ResolvedMode } from '../image/credentials.js';
import { bringUp, codexArgv, APPLIANCE_OPTIONS, APPLIANCE_HELP } from './up.js';
import { keyEnvFor, forgetCredentials } from './credentials.js';
import { down, writableMounts } from '../image/appliance.js';
import { sandboxExecArgs } from '../image/args.js';
import { DOCKER } from '../image/docker.js';
import { sandboxWritable } from '../image/project.js';
import { resolveTrusted, isWithin, mkdirNoFollow, createExclusive, UnsafePathError, realRoots } from '../image/paths.js';

export const EXEC_USAGE = `Usage: codex-egress exec [options] "PROMPT" [-- CODEX_ARGS...]

Runs "codex exec PROMPT" in the sandbox without a terminal. Its output goes to the terminal and to
run.log; exit.json records the exit code, start and end times and the effective allowlist. If the
appliance is not running it is brought up (and verified) first and taken down afterwards, unless --detach.

Options:
  --output DIR            where run.log and exit.json go (default: runs/<time> in the project's state
                          directory); never inside the workdir or the Codex home, which the sandbox can change
${APPLIANCE_HELP}
  -h, --help              this help

Exit codes: Codex's own once it ran; 1 error; 2 usage; 3 a probe failed (Codex not started).`;

export async function execCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, { ...APPLIANCE_OPTIONS, output: { type: 'string' } }, true);
  const [prompt, ...codexArgs] = positionals;
  if (!prompt) throw new UsageError('no prompt given');
  let ctx: ProjectContext & { credentials?: ResolvedMode } = projectFrom(v);
  // Checked before anything starts. The host writes here while the sandbox runs: no part of it may be
  // something the sandbox can change.
  let outDir = '';
  if (v.output) {
    // What this command's flags name, and what a running sandbox was actually started with (its
    // --sessions-path may not be repeated here).
    const untrusted = [...sandboxWritable(ctx.project, ctx.paths, v['sessions-path']), ...realRoots(await writableMounts(ctx.project.sandbox))];
    outDir = resolveTrusted(v.output, { untrusted, what: '--output', mayNotExist: true });
    const inside = untrusted.find((r) => isWithin(outDir, r));
    if (inside) throw new UnsafePathError(`--output ${v.output}: ${outDir} is inside ${inside}, which the sandbox can change: choose a directory outside it`);
  }
  const ownUp = !(await gatewayRunning(ctx.project));
  if (ownUp) {
    const r = await bringUp(v);
    if (typeof r === 'number') return r;
    ctx = r;
  }
  const { project: p, paths } = ctx;
  const started = new Date();
  if (v.output) {
    await mkdir(outDir, { recursive: true });
  } else {
    outDir = await mkdirNoFollow(join(paths.runs, started.toISOString().replace(/[:.]/g, '-')), paths.dir);
  }
  // run.log and exit.json are new files, never followed links (O_CREAT|O_EXCL|O_NOFOLLOW).
  const logFh = await open(join(outDir, 'run.log'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644).catch(async (e: NodeJS.ErrnoException) => {
    if (ownUp && !v.detach) await down(p, (s) => err(`codex-egress: ${s}`));
    throw new Error(`${join(outDir, 'run.log')}: ${e.code === 'EEXIST' ? 'exists already (choose an empty --output directory)' : e.message}`);
  });
  const log = createWriteStream('', { fd: logFh.fd, autoClose: false });
  const keys = await keyEnvFor(p, ctx.credentials);
  const sub = execa(DOCKER, sandboxExecArgs(p, codexArgv(v, ['exec'], [...codexArgs, prompt]), { envNames: keys.names }), {
    all: true, reject: false, buffer: false, stdin: 'ignore', env: keys.env,
  });
  sub.all?.pipe(log);
  sub.all?.pipe(process.stdout, { end: false });
  let exitCode = 1;
  await guarded(
    p,
    async () => {
      const r = await sub;
      exitCode = r.exitCode ?? 1;
    },
    async () => {
      await new Promise((res) => log.end(res));
      await logFh.close();
      const finished = new Date();
      const allowlist = existsSync(paths.effective) ? (JSON.parse(await readFile(paths.effective, 'utf8')) as { rules: unknown[] }).rules : null;
      await createExclusive(
        join(outDir, 'exit.json'),
        `${JSON.stringify({ exitCode, started: started.toISOString(), finished: finished.toISOString(), prompt, codexArgs, project: p.name, workdir: p.workdir, allowlist }, null, 2)}\n`,
      );
      err(`codex-egress: codex exited ${exitCode}; run.log and exit.json in ${outDir}`);
      if (ownUp && !v.detach) {
        await down(p, (s) => err(`codex-egress: ${s}`));
        forgetCredentials(paths);
      }
    },
  );
  return exitCode;
}
