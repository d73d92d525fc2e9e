// Rule syntax: one allowlist entry, parsed and validated with zod. No I/O.
import { z } from 'zod';
import { getPublicSuffix } from 'tldts';
import { normalizeName } from './names.js';

/** Where a rule came from (one list: the effective allowlist file's reader checks against it too). */
export const RULE_SOURCES = ['default', 'preset', 'env', 'flag', 'file'] as const;
export type RuleSource = (typeof RULE_SOURCES)[number];

/** exact: that host only · subdomains: any subdomain, not the apex · tree: the apex and all subdomains */
export type RuleScope = 'exact' | 'subdomains' | 'tree';

export interface Rule {
  /** The rule as written (trimmed, comment removed). */
  text: string;
  /** Normalised base name (lower case, punycode, no trailing dot). */
  name: string;
  scope: RuleScope;
  /** A port other than the defaults (443 via CONNECT, 80 via plain HTTP); for a deny rule, only that port. */
  port?: number;
  /**
   * `host:port/tcp`: a CONNECT tunnel on that port may carry any protocol (the first-bytes check still
   * compares the name in TLS and plain HTTP, but lets other bytes through). Without it, a tunnel must
   * carry TLS or HTTP naming the host, or SSH (on a rule with a port).
   */
  anyProtocol: boolean;
  deny: boolean;
  source: RuleSource;
  /** Where it came from: a file path and line, a flag, an environment variable. */
  origin: string;
}

export type RuleBody = Omit<Rule, 'source' | 'origin'>;

const PORT = /^[0-9]{1,5}$/;

/** zod schema turning one rule's text into its parsed body, with readable messages. */
export const ruleText = z.string().transform((raw, ctx): RuleBody => {
  const fail = (message: string): never => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  };
  const text = raw.trim();
  if (text === '') return fail('empty rule');
  let rest = text;
  const deny = rest.startsWith('!');
  if (deny) rest = rest.slice(1).trim();
  let anyProtocol = false;
  const proto = /:[0-9]+\/tcp$/i.exec(rest);
  if (proto) {
    anyProtocol = true;
    rest = rest.slice(0, -'/tcp'.length);
  }
  if (deny && anyProtocol) return fail(`"${text}": "/tcp" widens an allow rule; a deny rule names only a host and port`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest) || rest.includes('/')) {
    return fail(`"${text}" looks like a URL; write only the host name, e.g. "example.com"`);
  }
  let port: number | undefined;
  const colon = rest.lastIndexOf(':');
  if (rest.startsWith('[') || rest.indexOf(':') !== colon) return fail(`"${text}": IP addresses are not allowed, only names`);
  if (colon !== -1) {
    const p = rest.slice(colon + 1);
    if (!PORT.test(p) || Number(p) < 1 || Number(p) > 65535) return fail(`"${text}": port must be a number from 1 to 65535`);
    port = Number(p);
    rest = rest.slice(0, colon);
  }
  let scope: RuleScope = 'exact';
  if (rest.startsWith('*.')) {
    scope = 'subdomains';
    rest = rest.slice(2);
  } else if (rest.startsWith('.')) {
    scope = 'tree';
    rest = rest.slice(1);
  }
  if (rest === '*' || rest === '') return fail(`"${text}": a bare wildcard would allow everything`);
  if (rest.includes('*')) return fail(`"${text}": "*" is only allowed as the first label, as in "*.example.com"`);
  const n = normalizeName(rest);
  if (!n.ok) {
    return fail(n.reason === 'ip-literal' ? `"${text}": IP addresses are not allowed, only names` : `"${text}" is not a valid host name`);
  }
  if (!n.name.includes('.') || getPublicSuffix(n.name, { allowPrivateDomains: true }) === n.name) {
    return fail(`"${text}": "${n.name}" is a public suffix; name a domain under it`);
  }
  return { text, name: n.name, scope, port, deny, anyProtocol };
});

export type RuleErrors = { ok: false; errors: string[] };
export type RulesResult = { ok: true; rules: Rule[] } | RuleErrors;

/** Parse rules given one by one (flags, environment); every bad one is reported. */
export function parseRuleList(items: readonly string[], source: RuleSource, origin: string): RulesResult {
  const rules: Rule[] = [];
  const errors: string[] = [];
  for (const item of items) {
    const r = ruleText.safeParse(item);
    if (r.success) rules.push({ ...r.data, source, origin });
    else errors.push(`${origin}: ${r.error.issues.map((i) => i.message).join('; ')}`);
  }
  return errors.length ? { ok: false, errors } : { ok: true, rules };
}

/** Split OPENAI_ALLOWED_DOMAINS on whitespace and commas. */
export function splitList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter((s) => s !== '');
}

/** Parse the allowed_domains.txt format: one rule per line, `#` starts a comment. */
export function parseRuleFile(content: string, path: string): RulesResult {
  const rules: Rule[] = [];
  const errors: string[] = [];
  if (content.includes('\u0000')) return { ok: false, errors: [`${path}: not a text file`] };
  content.split(/\r?\n/).forEach((line, i) => {
    const text = line.replace(/#.*$/, '').trim();
    if (text === '') return;
    const r = parseRuleList([text], 'file', `${path}:${i + 1}`);
    if (r.ok) rules.push(...r.rules);
    else errors.push(...r.errors);
  });
  return errors.length ? { ok: false, errors } : { ok: true, rules };
}
