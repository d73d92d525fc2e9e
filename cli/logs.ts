// `codex-egress logs`: the gateway's audit log, pretty (colour on a TTY) or as the JSON lines themselves.
import { parse, intOption } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, sinceOption, out, err } from './common.js';
import { Tail, logLines, matches, formatLine, type Filter } from './auditlog.js';
import { parseLine } from './audit-line.js';
import { printableJson, printable } from './printable.js';
import { summariseLog, summaryLines } from './logs-summary.js';

export const LOGS_USAGE = `Usage: codex-egress logs [options]
       codex-egress logs summary [--since WHEN] [--top N] [--json]

Prints the audit log (one decision per line: DNS queries, CONNECT and HTTP requests, tunnel closes,
reloads; repeated denials as one "repeat" line with a count). The file itself is logs/audit.jsonl in the
project's state directory ("codex-egress status"), with its rotated history audit.jsonl.1 (newest) … .4;
all of them are read, oldest first, and followed across rotations. Every field is printed with control
and other hidden characters escaped (\\xHH, \\u{HHHH}).

Options:
${WORKDIR_HELP}
  -f, --follow            keep printing new lines until interrupted
  -n, --tail N            only the last N matching lines of the history (then, with -f, every new one)
  --denied                only denials (and rejected reloads)
  --since WHEN            only lines from then on: a duration (30s, 10m, 2h, 1d) or an ISO time
  --json                  the JSON lines as written (schema version in "v")

"logs summary": the names refused most (counts, the clients that asked) and the hosts that moved the
most bytes (closed tunnels and WebSockets), for the whole log or --since WHEN; --top N rows (default 10).
  -h, --help              this help

Exit codes: 0 ok; 2 usage.`;

export async function logsCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'summary') return logsSummary(argv.slice(1));
  const { values: v } = parse(argv, {
    ...workdirOptions,
    follow: { type: 'boolean', short: 'f' },
    tail: { type: 'string', short: 'n' },
    denied: { type: 'boolean' },
    since: { type: 'string' },
    json: { type: 'boolean' },
  });
  const { paths } = projectFrom(v);
  const filter: Filter = { denied: v.denied, sinceMs: sinceOption(v.since) };
  const tailN = v.tail === undefined ? undefined : intOption('tail', v.tail, 0, 0, 10_000_000);
  const colour = !v.json && !!process.stdout.isTTY && !process.env.NO_COLOR;
  let printed = 0;
  let seen = 0;
  // -n: the history's matching lines are held in a ring of N, printed once the history is read.
  let held: string[] | undefined = tailN === undefined ? undefined : [];
  let next = 0; // where the ring's next line goes once it is full
  const print = (l: string) => {
    const e = parseLine(l);
    if (e) seen++;
    if (!e || !matches(e, filter)) return;
    // --json: the line as written, with any hidden character as a \u escape (the same JSON value).
    const text = v.json ? printableJson(l) : formatLine(e, colour);
    printed++;
    if (!held) return out(text);
    if (tailN === 0) return;
    if (held.length < tailN!) held.push(text);
    else {
      held[next] = text;
      next = (next + 1) % tailN!;
    }
  };
  const release = () => {
    for (const text of [...(held ?? []).slice(next), ...(held ?? []).slice(0, next)]) out(text);
    held = undefined;
  };
  // The live file is opened first, so a rotation while the history is read neither loses nor repeats it.
  const tail = await Tail.atStart(paths.auditLog);
  try {
    for await (const l of logLines(paths.auditLog, { live: false, skipIno: tail.inode, sinceMs: filter.sinceMs })) print(l);
    for await (const l of tail.poll()) print(l);
    release();
    if (printed === 0 && !v.follow)
      err(`codex-egress: ${seen ? `none of the ${seen} audit events matches` : 'no audit events yet'} (${paths.auditLog})`);
    if (!v.follow) return EXIT.ok;
    let stop = false;
    const onSignal = () => (stop = true);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      while (!stop) {
        await new Promise((res) => setTimeout(res, 300));
        for await (const l of tail.poll()) print(l);
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return EXIT.ok;
  } finally {
    await tail.close();
  }
}

async function logsSummary(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...workdirOptions, since: { type: 'string' }, top: { type: 'string' }, json: { type: 'boolean' } });
  const { paths } = projectFrom(v);
  const s = await summariseLog(paths.auditLog, sinceOption(v.since), intOption('top', v.top, 10, 1, 100_000));
  if (v.json) out(printableJson(JSON.stringify(s, null, 2)));
  else for (const l of summaryLines(s)) out(printable(l));
  return EXIT.ok;
}
