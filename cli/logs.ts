// `codex-egress logs`: the gateway's audit log, pretty (colour on a TTY) or as the JSON lines themselves.
import { parse, UsageError } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, out, err } from './common.js';
import { readFrom, parseLine, matches, formatLine, parseSince, type Filter } from './auditlog.js';

export const LOGS_USAGE = `Usage: codex-egress logs [options]

Prints the audit log (one decision per line: DNS queries, CONNECT and HTTP requests, tunnel closes,
reloads). The file itself is logs/audit.jsonl in the project's state directory ("codex-egress status").

Options:
${WORKDIR_HELP}
  -f, --follow            keep printing new lines until interrupted
  --denied                only denials (and rejected reloads)
  --since WHEN            only lines from then on: a duration (30s, 10m, 2h, 1d) or an ISO time
  --json                  the JSON lines as written (schema version in "v")
  -h, --help              this help

Exit codes: 0 ok; 2 usage.`;

export async function logsCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    ...workdirOptions,
    follow: { type: 'boolean', short: 'f' },
    denied: { type: 'boolean' },
    since: { type: 'string' },
    json: { type: 'boolean' },
  });
  const { paths } = projectFrom(v);
  const filter: Filter = { denied: v.denied };
  if (v.since !== undefined) {
    try {
      filter.sinceMs = parseSince(v.since);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const colour = !v.json && !!process.stdout.isTTY && !process.env.NO_COLOR;
  const print = (lines: string[]) => {
    for (const l of lines) {
      const e = parseLine(l);
      if (e && matches(e, filter)) out(v.json ? l : formatLine(e, colour));
    }
  };
  let { lines, offset } = await readFrom(paths.auditLog, 0);
  if (lines.length === 0 && !v.follow) err(`codex-egress: no audit events yet (${paths.auditLog})`);
  print(lines);
  if (!v.follow) return EXIT.ok;
  let stop = false;
  process.once('SIGINT', () => (stop = true));
  process.once('SIGTERM', () => (stop = true));
  while (!stop) {
    await new Promise((res) => setTimeout(res, 300));
    ({ lines, offset } = await readFrom(paths.auditLog, offset));
    print(lines);
  }
  return EXIT.ok;
}
