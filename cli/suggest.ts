// `codex-egress suggest`: learning mode. The names the sandbox was refused (from the audit log), as the
// narrowest allow rules that cover them (cli/suggest-rules.ts), each with its count, and the one command
// that accepts them. Start strict, widen on evidence.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parse, intOption } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, sinceOption, out, err, json } from './common.js';
import { logEvents } from './auditlog.js';
import { DeniedNames, propose } from './suggest-rules.js';
import { risksOf } from './risks.js';
import { readRuleFile } from '../proxy/config.js';
import { mergeSources, Allowlist } from '../proxy/policy/allowlist.js';
import { parseRuleList } from '../proxy/policy/rules.js';
import { printable } from './printable.js';

export const SUGGEST_USAGE = `Usage: codex-egress suggest [options]

Learning mode: reads the audit log and turns the names the sandbox was refused (not on the allowlist, or
not on that port) into proposed allow rules, the narrowest that cover them: one exact rule per name, or,
for --collapse names or more under one site, the wildcard of their common parent (never wider than the
site). Each line has its count and the names it covers. Names allowed since, and names a deny rule
refuses, are left out (deny wins). Nothing is changed: accept the lines you want with the
"codex-egress allow ..." command printed at the end. The names came from the sandbox: read them first.

Options:
${WORKDIR_HELP}
  --since WHEN            only refusals from then on: a duration (30s, 10m, 2h, 1d) or an ISO time
  --min-count N           only rules asked for at least N times (default 1)
  --collapse N            names under one site that become one wildcard rule (default 3)
  --json                  print as JSON
  -h, --help              this help

Exit codes: 0 ok (also when there is nothing to suggest); 2 usage.`;

/** A rule as one shell word (so the printed command can be pasted as it is). */
const shellWord = (s: string) => (/^[A-Za-z0-9._:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * The allowlists that may be in force: the gateway's effective list of its last (or current) run, with
 * its --allow rules, and the one the next run computes (defaults, OPENAI_ALLOWED_DOMAINS, the file).
 */
async function allowlists(effective: string, file: string): Promise<Allowlist[]> {
  const lists: Allowlist[] = [];
  if (existsSync(effective)) {
    const rules =
      (JSON.parse(await readFile(effective, 'utf8').catch(() => '{"rules":[]}')) as { rules?: Array<{ rule: string }> }).rules ?? [];
    const r = parseRuleList(
      rules.map((x) => x.rule),
      'file',
      effective,
    );
    if (r.ok) lists.push(new Allowlist(r.rules));
  }
  const m = mergeSources({ defaults: true, env: process.env.OPENAI_ALLOWED_DOMAINS, flags: [], file: await readRuleFile(file) });
  if (m.ok) lists.push(m.allowlist);
  return lists;
}

export async function suggestCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    ...workdirOptions,
    since: { type: 'string' },
    'min-count': { type: 'string' },
    collapse: { type: 'string' },
    json: { type: 'boolean' },
  });
  const { paths } = projectFrom(v);
  const sinceMs = sinceOption(v.since);
  const minCount = intOption('min-count', v['min-count'], 1, 1, 1_000_000_000);
  const collapse = intOption('collapse', v.collapse, 3, 2, 1_000_000);
  const denied = new DeniedNames();
  for await (const e of logEvents(paths.auditLog, { has: '"deny"', sinceMs })) denied.add(e);
  const lists = await allowlists(paths.effective, paths.allowlist);
  // Left out: what is allowed now, and what a deny rule refuses (deny wins, also over a suggestion).
  const inForce = (name: string, port?: number) =>
    lists.some((a) => {
      const d = a.decide(name, port ? 'connect' : 'dns', port);
      return d.allow || d.reason === 'denied-by-rule';
    });
  const proposals = propose(denied.asked.values(), inForce, collapse)
    .filter((p) => p.count >= minCount)
    .map((p) => ({ ...p, risks: risksOf(p.rule).map((n) => ({ host: n.host, why: n.why })) }));
  const command = proposals.length ? `codex-egress allow ${proposals.map((p) => shellWord(p.rule)).join(' ')}` : null;
  if (v.json) {
    json({ log: paths.auditLog, proposals, command });
    return EXIT.ok;
  }
  if (!proposals.length) {
    err(`codex-egress suggest: no refused names to learn from${v.since ? ` since ${v.since}` : ''} (${paths.auditLog})`);
    return EXIT.ok;
  }
  const w = Math.max(4, ...proposals.map((p) => p.rule.length));
  out(`${'RULE'.padEnd(w)}  COUNT  NAMES (CLIENTS)`);
  for (const p of proposals) {
    const names = p.names.length > 5 ? `${p.names.slice(0, 5).join(' ')} … (${p.names.length} names)` : p.names.join(' ');
    out(printable(`${p.rule.padEnd(w)}  ${String(p.count).padStart(5)}  ${names}${p.clients.length ? ` (${p.clients.join(' ')})` : ''}`));
    for (const r of p.risks) out(printable(`${' '.repeat(w)}  note:  opens ${r.host.replace(/^[*.]+/, '')}, which ${r.why}`));
  }
  out('');
  out(printable(`accept: ${command}`));
  return EXIT.ok;
}
