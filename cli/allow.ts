// `codex-egress allow RULE...` / `codex-egress deny RULE...`: edit allowed_domains.txt (persisted), and
// when the gateway runs, have it reload (live, open tunnels to still-allowed hosts stay) and confirm.
import { parse, UsageError } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, gatewayRunning, out, err, json } from './common.js';
import { editAllowlistFile, prepareState, ProjectError } from '../image/project.js';
import { reloadGateway } from '../image/appliance.js';
import { Tail } from './auditlog.js';
import { parseLine, type AuditLine } from './audit-line.js';
import { printable } from './printable.js';
import { risksOf } from './risks.js';

const usage = (op: 'allow' | 'deny') => `Usage: codex-egress ${op} [options] RULE...

${op === 'allow' ? 'Adds each rule to the allowlist file (and removes a matching !rule)' : 'Adds !rule for each rule to the allowlist file (and removes the rule itself); deny wins over every source, the built-in defaults included'}.
The file is ${'`'}allowed_domains.txt${'`'} in the project's state directory (see "codex-egress status"). When the
appliance runs, the gateway reloads at once and this command waits for its confirmation.

Rules: example.com (that host) · *.example.com (subdomains) · .example.com (both) · :PORT suffix

Options:
${WORKDIR_HELP}
  --json                  print the outcome as JSON
  -h, --help              this help

Exit codes: 0 saved (and reloaded when running); 1 the gateway rejected the reload; 2 usage or invalid rule.`;

export const ALLOW_USAGE = usage('allow');
export const DENY_USAGE = usage('deny');

/**
 * Wait (bounded) for the gateway's first reload event written after `tail` started. Only what is appended
 * is read (across a rotation too), so the log's size never matters.
 */
async function waitForReload(tail: Tail, timeoutMs: number): Promise<AuditLine | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for await (const l of tail.poll()) {
      if (!l.includes('"reload"')) continue;
      const e = parseLine(l);
      if (e?.event === 'reload') return e;
      if (Date.now() >= deadline) break;
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  return undefined;
}

const command = (op: 'allow' | 'deny') =>
  async function (argv: string[]): Promise<number> {
    const { values: v, positionals } = parse(argv, { ...workdirOptions, json: { type: 'boolean' } }, true);
    if (positionals.length === 0) throw new UsageError('no rule given');
    const { project: p, paths } = projectFrom(v);
    await prepareState(paths);
    // From the log's current end: what the gateway writes after the edit (a stat and an open, whatever its size).
    const tail = await Tail.atEnd(paths.auditLog);
    let changed: string[];
    let running: boolean;
    let reload: AuditLine | undefined;
    try {
      try {
        changed = (await editAllowlistFile(paths.allowlist, op, positionals)).changed;
      } catch (e) {
        if (e instanceof ProjectError) throw new UsageError(e.message);
        throw e;
      }
      running = await gatewayRunning(p);
      // The gateway watches the file and reloads once per change of its content; a signal is only the
      // fall-back when no reload came (events not delivered and the poll not yet run), so an edit is one reload.
      if (running && changed.length) {
        reload = await waitForReload(tail, 5_000);
        if (!reload) {
          await reloadGateway(p);
          reload = await waitForReload(tail, 10_000);
        }
      }
    } finally {
      await tail.close();
    }
    const ok = !running || !changed.length || reload?.ok === true;
    // Warned, not refused: a rule that opens a host known to carry anyone's content or tunnels (cli/risk-notes.ts).
    const risks = op === 'allow' ? positionals.flatMap((rule) => risksOf(rule).map((n) => ({ rule, host: n.host, why: n.why }))) : [];
    if (v.json) json({ op, rules: positionals, changed, file: paths.allowlist, running, reload: reload ?? null, ok, risks });
    else {
      for (const r of risks) {
        const host = r.host.replace(/^[*.]+/, '');
        const what = host === r.rule.toLowerCase().replace(/\.$/, '') ? host : `${r.rule} opens ${host}, which`;
        err(printable(`codex-egress allow: note: ${what} ${r.why}; allowed as asked ("codex-egress deny ${r.rule}" takes it back)`));
      }
      out(printable(`${op}: ${changed.length ? changed.join(' ') : 'no change'} (${paths.allowlist})`));
      if (!running) out('the appliance is not running: the rules apply at the next "codex-egress up"');
      else if (!changed.length) out('nothing to reload');
      else if (!reload) err('codex-egress: the gateway did not confirm a reload within 15 s: check "codex-egress logs"');
      else if (reload.ok) out(`gateway reloaded: ${reload.rules} rules`);
      else err(`codex-egress: the gateway rejected the allowlist, the previous one stays: ${printable(JSON.stringify(reload.errors))}`);
    }
    return ok ? EXIT.ok : EXIT.error;
  };

export const allowCommand = command('allow');
export const denyCommand = command('deny');
