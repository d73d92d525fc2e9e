// `codex-egress down`: remove the project's containers and networks (exactly what `up` made).
import { parse } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, guarded, err, json } from './common.js';
import { down } from '../image/appliance.js';
import { forgetCredentials } from './credentials.js';

export const DOWN_USAGE = `Usage: codex-egress down [options]

Stops the gateway gracefully (its audit log is flushed) and removes every container and network labelled
with the project. The allowlist, the audit log and the Codex home stay (see "codex-egress status").
Ctrl-C does not interrupt it: the first two signals are ignored, a third aborts and says what is left.

Options:
${WORKDIR_HELP}
  --json                  print what was removed as JSON
  -h, --help              this help

Exit codes: 0 done (also when nothing was running); 1 error; 2 usage.`;

export async function downCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...workdirOptions, json: { type: 'boolean' } });
  const { project, paths } = projectFrom(v);
  // Cleanup finishes whatever signals arrive (a third aborts, saying what is left).
  let removed: string[] = [];
  await guarded(
    project,
    async () => undefined,
    async () => {
      removed = await down(project, v.json ? () => undefined : (s) => err(`codex-egress: ${s}`));
      forgetCredentials(paths);
    },
  );
  if (v.json) json({ project: project.name, removed });
  else if (removed.length === 0) err(`codex-egress: nothing running for ${project.workdir}`);
  return EXIT.ok;
}
