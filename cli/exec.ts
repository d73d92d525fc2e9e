// `codex-egress exec "PROMPT"`: run `codex exec` non-interactively in the sandbox; write run.log and exit.json.
import { createWriteStream, constants as fsc } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { readEffective } from '../proxy/effective.js';
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
import { liveProject } from '../image/subnet.js';
import { withCodexHome } from './codex-home.js';
import { lastMessagePath, safeDirectoryEnv } from '../image/worker.js';
import { WORKER_OPTIONS, WORKER_HELP, workerPlan, repoRefusal, cloneInSandbox, lastMessage, summaryMarkdown } from './worker.js';

export const EXEC_USAGE = `Usage: codex-egress exec [options] "PROMPT" [-- CODEX_ARGS...]

Runs "codex exec PROMPT" in the sandbox without a terminal. Its output goes to the terminal and to
run.log; exit.json records the exit code, start and end times and the effective allowlist; summary.md
holds Codex's last message (--output-last-message). If the
appliance is not running it is brought up (and verified) first and taken down afterwards, unless --detach.

Options:
  --output DIR            where run.log and exit.json go (default: runs/<time> in the project's state
                          directory); never inside the workdir or the Codex home, which the sandbox can change
${WORKER_HELP}
${APPLIANCE_HELP}
  -h, --help              this help

Exit codes: Codex's own once it ran; 1 error; 2 usage; 3 a probe failed (Codex not started).`;

export async function execCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, { ...APPLIANCE_OPTIONS, ...WORKER_OPTIONS, output: { type: 'string' } }, true);
  const [prompt, ...codexArgs] = positionals;
  if (!prompt) throw new UsageError('no prompt given');
  let ctx: ProjectContext & { credentials?: ResolvedMode } = withCodexHome(projectFrom(v), v['codex-home']);
  const worker = workerPlan(v, ctx.project.workdir);
  // Checked before anything starts. The host writes here while the sandbox runs: no part of it may be
  // something the sandbox can change.
  let outDir = '';
  if (v.output) {
    // What this command's flags name, and what a running sandbox was actually started with (its
    // --sessions-path may not be repeated here).
    const untrusted = [
      ...sandboxWritable(ctx.project, ctx.paths, v['sessions-path']),
      ...realRoots(await writableMounts(ctx.project.sandbox)),
    ];
    outDir = resolveTrusted(v.output, { untrusted, what: '--output', mayNotExist: true });
    const inside = untrusted.find((r) => isWithin(outDir, r));
    if (inside)
      throw new UnsafePathError(
        `--output ${v.output}: ${outDir} is inside ${inside}, which the sandbox can change: choose a directory outside it`,
      );
  }
  const ownUp = !(await gatewayRunning(ctx.project));
  // Worker mode: a repository host the gateway would refuse fails here, naming the rule, not as a git timeout.
  if (worker) {
    const refusal = await repoRefusal(worker, ctx.paths, !ownUp, v);
    if (refusal) {
      err(`codex-egress exec: ${refusal}`);
      return 1;
    }
  }
  if (!ownUp) ctx = { ...ctx, project: await liveProject(ctx.project) };
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
  const logFh = await open(join(outDir, 'run.log'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644).catch(
    async (e: NodeJS.ErrnoException) => {
      if (ownUp && !v.detach) await down(p, (s) => err(`codex-egress: ${s}`));
      throw new Error(
        `${join(outDir, 'run.log')}: ${e.code === 'EEXIST' ? 'exists already (choose an empty --output directory)' : e.message}`,
      );
    },
  );
  const log = createWriteStream('', { fd: logFh.fd, autoClose: false });
  const keys = await keyEnvFor(p, ctx.credentials);
  const runId = `${process.pid}-${started.getTime()}`;
  let exitCode = 1;
  let commit: string | undefined;
  let failure: string | undefined;
  await guarded(
    p,
    async () => {
      if (worker) {
        const c = await cloneInSandbox(p, worker, log);
        if (!c.ok) {
          failure = c.message;
          exitCode = 1;
          err(`codex-egress exec: ${c.message}`);
          return;
        }
        commit = c.commit;
      }
      const env = { ...keys.env, ...(worker ? safeDirectoryEnv(worker.path) : {}) };
      const sub = execa(
        DOCKER,
        sandboxExecArgs(p, codexArgv(v, ['exec', '--output-last-message', lastMessagePath(runId)], [...codexArgs, prompt]), {
          envNames: Object.keys(env),
          ...(worker ? { cwd: worker.path } : {}),
        }),
        {
          all: true,
          reject: false,
          buffer: false,
          stdin: 'ignore',
          env,
        },
      );
      sub.all?.pipe(log, { end: false });
      sub.all?.pipe(process.stdout, { end: false });
      const r = await sub;
      exitCode = r.exitCode ?? 1;
    },
    async () => {
      await new Promise((res) => log.end(res));
      await logFh.close();
      const finished = new Date();
      // A missing or unreadable effective allowlist is recorded as null: exit.json is still written.
      const allowlist = await readEffective(paths.effective).then(
        (e) => e?.rules ?? null,
        () => null,
      );
      await createExclusive(
        join(outDir, 'exit.json'),
        `${JSON.stringify(
          {
            exitCode,
            started: started.toISOString(),
            finished: finished.toISOString(),
            prompt,
            codexArgs,
            project: p.name,
            workdir: p.workdir,
            ...(worker ? { repo: worker.repo.url, ref: worker.ref ?? null, repoDir: worker.path, commit: commit ?? null } : {}),
            ...(failure ? { error: failure } : {}),
            allowlist,
          },
          null,
          2,
        )}\n`,
      );
      const message = failure ? undefined : await lastMessage(p, runId);
      await createExclusive(
        join(outDir, 'summary.md'),
        summaryMarkdown({ prompt, exitCode, repo: worker?.repo.url, commit, message: failure ?? message }),
      );
      err(`codex-egress: ${failure ? 'codex did not run' : `codex exited ${exitCode}`}; run.log, exit.json and summary.md in ${outDir}`);
      if (ownUp && !v.detach) {
        await down(p, (s) => err(`codex-egress: ${s}`));
        forgetCredentials(paths);
      }
    },
  );
  return exitCode;
}
