// The allowlist: merged rules with provenance, matched through a reversed-label trie, and the one
// decide() every layer asks. Deny always wins. No I/O.
import { PRESETS, type PresetName } from './presets.js';
import { normalizeName } from './names.js';
import type { PolicyDenyReason } from '../reasons.js';
import { parseRuleList, splitList, type Rule, type RulesResult } from './rules.js';

/** How the name is being used: a DNS lookup, a CONNECT tunnel, or a plain-HTTP request. */
export type Via = 'dns' | 'connect' | 'http';

export type RuleRef = Pick<Rule, 'text' | 'source' | 'origin'>;

/** What decide() says about a host: allowed by a rule, or refused for a reason (proxy/reasons.ts). */
export type Decision =
  | {
      allow: true;
      reason: 'allowed';
      /** The normalised host the decision is about. */
      host: string;
      /** The rule that decided, with its provenance. */
      rule: RuleRef;
      /** What a CONNECT tunnel may carry (README: what a port rule carries). */
      carries: Carries;
    }
  | {
      allow: false;
      reason: PolicyDenyReason;
      /** The normalised host, when the input was a valid name. */
      host?: string;
      /** The deny rule that matched, or for port-not-allowed an allow rule of that name. */
      rule?: RuleRef;
    };

/**
 * What an allowed CONNECT tunnel may carry:
 * - tls: a rule without a port (443): a TLS handshake naming the host, nothing else;
 * - named: a rule with a port: TLS or plain HTTP naming the host, or SSH (which names no host);
 * - any: a `host:port/tcp` rule: any bytes (TLS and HTTP are still held to the host).
 */
export type Carries = 'tls' | 'named' | 'any';
const carries = (r: Rule): Carries => (r.anyProtocol ? 'any' : r.port === undefined ? 'tls' : 'named');
/** What a tunnel may carry, narrowest first: of the rules that allow a host and port, the widest decides. */
export const CARRIES_RANK: Readonly<Record<Carries, number>> = { tls: 0, named: 1, any: 2 };

export const DEFAULT_RULES = ['api.openai.com', 'auth.openai.com', 'chatgpt.com'] as const;
export const DEFAULT_PORT: Record<Exclude<Via, 'dns'>, number> = { connect: 443, http: 80 };

interface Node {
  children: Map<string, Node>;
  /** Rules matching exactly this name. */
  here: Rule[];
  /** Rules matching any name strictly below this one. */
  below: Rule[];
}

const MEMO_ENTRIES = 4096;
const MEMO_MAX_HOST = 254;

const newNode = (): Node => ({ children: new Map(), here: [], below: [] });

function portMatches(rule: Rule, via: Via, port: number | undefined): boolean {
  if (rule.deny) return rule.port === undefined || (via !== 'dns' && rule.port === port);
  if (via === 'dns') return true;
  return rule.port === undefined ? port === DEFAULT_PORT[via] : rule.port === port;
}

const ruleRef = (r: Rule): RuleRef => ({ text: r.text, source: r.source, origin: r.origin });

export class Allowlist {
  readonly rules: readonly Rule[];
  private readonly root: Node = newNode();
  /**
   * Decisions already made, by the exact input (host, how, port). The allowlist never changes (a reload
   * makes a new one), so a remembered decision stays right; a different spelling is a different key and
   * is decided afresh. Bounded: inputs of at most 254 characters, cleared when full (about 1 MB).
   */
  private readonly memo = new Map<string, Decision>();

  constructor(rules: readonly Rule[]) {
    this.rules = rules;
    for (const rule of rules) {
      let node = this.root;
      for (const label of rule.name.split('.').reverse()) {
        let next = node.children.get(label);
        if (!next) node.children.set(label, (next = newNode()));
        node = next;
      }
      if (rule.scope !== 'subdomains') node.here.push(rule);
      if (rule.scope !== 'exact') node.below.push(rule);
    }
  }

  /** The rules that match a normalised name, whatever their port; cost grows with the name's labels only. */
  private matching(name: string): Rule[] {
    const labels = name.split('.').reverse();
    const found: Rule[] = [];
    let node: Node | undefined = this.root;
    for (let i = 0; i < labels.length && node; i++) {
      node = node.children.get(labels[i]!);
      if (!node) break;
      if (i === labels.length - 1) found.push(...node.here);
      else found.push(...node.below);
    }
    return found;
  }

  /** Decide whether `host` may be used `via` DNS, CONNECT or plain HTTP on `port`. */
  decide(host: string, via: Via, port?: number): Decision {
    // A longer input is no name (at most 253 octets and a dot): not remembered, so the memo stays small.
    if (host.length > MEMO_MAX_HOST) return this.evaluate(host, via, port);
    const key = `${via} ${port ?? ''} ${host}`;
    let d = this.memo.get(key);
    if (d === undefined) {
      if (this.memo.size >= MEMO_ENTRIES) this.memo.clear();
      d = Object.freeze(this.evaluate(host, via, port));
      this.memo.set(key, d);
    }
    return d;
  }

  /** decide() without the memo: normalise and match every time (what the scaling benchmark measures). */
  evaluate(host: string, via: Via, port?: number): Decision {
    const n = normalizeName(host);
    if (!n.ok) return { allow: false, reason: n.reason };
    const rules = this.matching(n.name);
    const deny = rules.find((r) => r.deny && portMatches(r, via, port));
    if (deny) return { allow: false, reason: 'denied-by-rule', host: n.name, rule: ruleRef(deny) };
    const allows = rules.filter((r) => !r.deny);
    // Every rule that allows the port counts: the widest says what a tunnel may carry (rule order does not).
    let allow: Rule | undefined;
    for (const r of allows) if (portMatches(r, via, port) && (!allow || CARRIES_RANK[carries(r)] > CARRIES_RANK[carries(allow)])) allow = r;
    if (allow) return { allow: true, reason: 'allowed', host: n.name, rule: ruleRef(allow), carries: carries(allow) };
    if (allows.length) return { allow: false, reason: 'port-not-allowed', host: n.name, rule: ruleRef(allows[0]!) };
    return { allow: false, reason: 'not-allowlisted', host: n.name };
  }
}

export interface AllowlistSources {
  defaults: boolean;
  /** A preset's name (policy/presets.ts); its rules come after the defaults, as source "preset". */
  preset?: PresetName;
  /** OPENAI_ALLOWED_DOMAINS */
  env?: string;
  flags: readonly string[];
  /** The parsed allowlist file (already read), or nothing when there is none. */
  file?: RulesResult;
}

/** Merge the four sources, in order default, env, flag, file, each rule keeping its provenance. */
export function mergeSources(s: AllowlistSources): { ok: true; allowlist: Allowlist } | { ok: false; errors: string[] } {
  const parts: RulesResult[] = [
    s.defaults ? parseRuleList(DEFAULT_RULES, 'default', 'built-in default') : { ok: true, rules: [] },
    s.preset ? parseRuleList(PRESETS[s.preset], 'preset', `--preset ${s.preset}`) : { ok: true, rules: [] },
    parseRuleList(splitList(s.env), 'env', 'OPENAI_ALLOWED_DOMAINS'),
    parseRuleList(s.flags, 'flag', '--allow'),
    s.file ?? { ok: true, rules: [] },
  ];
  const errors = parts.flatMap((p) => (p.ok ? [] : p.errors));
  if (errors.length) return { ok: false, errors };
  return { ok: true, allowlist: new Allowlist(parts.flatMap((p) => (p.ok ? p.rules : []))) };
}
