// `codex-egress exec "PROMPT"`: run `codex exec` non-interactively in the sandbox; write run.log and exit.json.
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { parse, UsageError } from './args.js';
import { projectFrom, gatewayRunning, shielded, err } from './common.js';
import { bringUp, APPLIANCE_OPTIONS, APPLIANCE_HELP } from './up.js';
import { down } from '../image/appliance.js';
import { sandboxExecArgs } from '../image/args.js';
import { DOCKER } from '../image/docker.js';

export const EXEC_USAGE = `Usage: codex-egress exec [options] "PROMPT" [-- CODEX_ARGS...]

Runs "codex exec PROMPT" in the sandbox without a terminal. Its output goes to the terminal and to
run.log; exit.json records the exit code, start and end times and the effective allowlist. If the
appliance is not running it is brought up (and verified) first and taken down afterwards, unless --detach.

Options:
  --output DIR            where run.log and exit.json go (default: .codex-egress/runs/<time> in the workdir)
${APPLIANCE_HELP}
  -h, --help              this help

Exit codes: Codex's own once it ran; 1 error; 2 usage; 3 a probe failed (Codex not started).`;

export async function execCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, { ...APPLIANCE_OPTIONS, output: { type: 'string' } }, true);
  const [prompt, ...codexArgs] = positionals;
  if (!prompt) throw new UsageError('no prompt given');
  let ctx = projectFrom(v);
  const ownUp = !(await gatewayRunning(ctx.project));
  if (ownUp) {
    const r = await bringUp(v);
    if (typeof r === 'number') return r;
    ctx = r;
  }
  const { project: p, paths } = ctx;
  const started = new Date();
  const outDir = v.output ? resolve(v.output) : join(paths.runs, started.toISOString().replace(/[:.]/g, '-'));
  await mkdir(outDir, { recursive: true });
  const log = createWriteStream(join(outDir, 'run.log'));
  const sub = execa(DOCKER, sandboxExecArgs(p, ['codex', 'exec', ...codexArgs, prompt]), { all: true, reject: false, buffer: false, stdin: 'ignore' });
  sub.all?.pipe(log);
  sub.all?.pipe(process.stdout, { end: false });
  const r = await shielded(async () => sub);
  await new Promise((res) => log.end(res));
  const finished = new Date();
  const exitCode = r.exitCode ?? 1;
  const allowlist = existsSync(paths.effective) ? (JSON.parse(await readFile(paths.effective, 'utf8')) as { rules: unknown[] }).rules : null;
  await writeFile(
    join(outDir, 'exit.json'),
    `${JSON.stringify({ exitCode, started: started.toISOString(), finished: finished.toISOString(), prompt, codexArgs, project: p.name, workdir: p.workdir, allowlist }, null, 2)}\n`,
  );
  err(`codex-egress: codex exited ${exitCode}; run.log and exit.json in ${outDir}`);
  if (ownUp && !v.detach) await down(p, (s) => err(`codex-egress: ${s}`));
  return exitCode;
}


