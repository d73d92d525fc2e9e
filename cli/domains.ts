// `codex-egress domains`: the effective allowlist with provenance (what the gateway enforces).
import { existsSync } from 'node:fs';
import { readEffective } from '../proxy/effective.js';
import { parse } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, gatewayRunning, out, json } from './common.js';
import { readRuleFile } from '../proxy/config.js';
import { mergeSources } from '../proxy/policy/allowlist.js';

export const DOMAINS_USAGE = `Usage: codex-egress domains [options]

Prints the effective allowlist, one rule per line with its source (default, preset, env, flag, file) and origin.
While the appliance runs this is the gateway's own ${'`'}allowed_domains.effective.json${'`'}; otherwise it is
computed from the built-in defaults, OPENAI_ALLOWED_DOMAINS and the allowlist file.

Options:
${WORKDIR_HELP}
  --json                  print as JSON
  -h, --help              this help

Exit codes: 0 ok; 1 the allowlist file is invalid; 2 usage.`;

interface Entry {
  rule: string;
  source: string;
  origin: string;
}

export async function domainsCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...workdirOptions, json: { type: 'boolean' } });
  const { project, paths } = projectFrom(v);
  let rules: Entry[];
  let from: string;
  const effective = existsSync(paths.effective) && (await gatewayRunning(project)) ? await readEffective(paths.effective) : undefined;
  if (effective) {
    rules = effective.rules;
    from = paths.effective;
  } else {
    const r = mergeSources({
      defaults: true,
      env: process.env.OPENAI_ALLOWED_DOMAINS,
      flags: [],
      file: await readRuleFile(paths.allowlist),
    });
    if (!r.ok) {
      process.stderr.write(`codex-egress domains: ${r.errors.join('\n  ')}\n`);
      return EXIT.error;
    }
    rules = r.allowlist.rules.map((x) => ({ rule: x.text, source: x.source, origin: x.origin }));
    from = `${paths.allowlist} (not running: computed)`;
  }
  if (v.json) json({ from, rules });
  else {
    const w = Math.max(0, ...rules.map((r) => r.rule.length));
    for (const r of rules) out(`${r.rule.padEnd(w)}  ${r.source.padEnd(7)}  ${r.origin}`);
    process.stderr.write(`(${rules.length} rules, from ${from})\n`);
  }
  return EXIT.ok;
}
