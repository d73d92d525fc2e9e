// Errors → exit codes and messages, in one place: every command's error becomes one line on stderr,
// "codex-egress COMMAND: what is wrong[: what to do]", and an exit code (README: Exit codes). The usage
// text is not repeated after it ("--help" shows that). Pure: main.ts writes the line.
import { UsageError } from './args.js';
import { ProjectError } from '../image/project.js';
import { DockerError } from '../image/docker.js';
import { EXIT } from './common.js';

export interface Failure {
  code: number;
  /** One line (no newline inside). */
  line: string;
}

/** Several lines (a list of errors) as one: "a; b". */
export function oneLine(message: string): string {
  return message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('; ')
    .replace(/:;\s/g, ': ');
}

/** Where the help is, added to usage errors that are about the command line itself. */
const HELP_HINT = (command: string) => ` (see "codex-egress ${command} --help")`;

/** The exit code and the one line for an error thrown by `command`. */
export function failureOf(command: string, err: unknown): Failure {
  const prefix = command ? `codex-egress ${command}` : 'codex-egress';
  if (err instanceof UsageError) {
    const m = oneLine(err.message).replace(/\.$/, '');
    const flagProblem = /^(Unknown option|Option '|Unexpected argument|no rule given|.*argument missing)/i.test(m);
    return { code: EXIT.usage, line: `${prefix}: ${m}${flagProblem ? HELP_HINT(command) : ''}` };
  }
  if (err instanceof ProjectError) return { code: EXIT.usage, line: `${prefix}: ${oneLine(err.message)}` };
  if (err instanceof DockerError) {
    const m = oneLine(err.message);
    if (/spawn \S+ ENOENT/.test(m))
      return {
        code: EXIT.error,
        line: `${prefix}: the docker command was not found: install Docker (Debian: apt-get install docker.io) or set CODEX_EGRESS_DOCKER`,
      };
    const fix = /permission denied/i.test(m)
      ? ': you may not use the Docker socket (add yourself to the "docker" group, or run as root)'
      : /Cannot connect to the Docker daemon|Is the docker daemon running|ENOENT/i.test(m)
        ? ': start the Docker engine (dockerd, or systemctl start docker); "codex-egress doctor" checks the set-up'
        : '';
    return { code: EXIT.error, line: `${prefix}: docker failed: ${m}${fix}` };
  }
  const e = err as { code?: string; message?: string } | undefined;
  if (e?.code === 'ENOENT' && /docker/.test(e.message ?? '')) {
    return { code: EXIT.error, line: `${prefix}: the docker command is not installed: install Docker (Debian: apt-get install docker.io)` };
  }
  const message = e?.message ?? String(err);
  return { code: EXIT.error, line: `${prefix}: ${oneLine(message)}` };
}
