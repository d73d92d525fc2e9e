// Learning mode, the pure part: the names a run was refused, turned into the narrowest allow rules that
// cover them, each with its count. Names are grouped under their registrable domain (never wider: a
// rule never spans two sites, nor names a public suffix); within a site, fewer than `collapse` names (3)
// stay exact rules, one each, and more become the wildcard of their longest common parent
// ("*.cdn.example.com", or ".example.com" when the parent itself was asked for too). A name on a port other than 443/80 keeps its port ("host:8443").
// Every name here was chosen by the sandbox: each proposal is checked with the policy's own parser, and
// the user decides what to accept (`codex-egress allow` with the chosen rules).
import { getDomain } from 'tldts';
import { normalizeName } from '../proxy/policy/names.js';
import { ruleText } from '../proxy/policy/rules.js';
import type { AuditLine } from './audit-line.js';

/** Why a denial is evidence for a rule: the name is simply not on the allowlist (or not on that port). */
const LEARNABLE = new Set(['not-allowlisted', 'port-not-allowed']);

export interface Asked {
  /** Normalised name. */
  name: string;
  /** A port other than the defaults (from a refused CONNECT/request), else undefined. */
  port?: number;
  count: number;
  clients: Set<string>;
}

/** `host:port` read apart (the port: undefined if there is none that reads as one). */
function splitHostPort(text: string): [string, number | undefined] {
  const i = text.lastIndexOf(':');
  const port = i === -1 ? NaN : Number(text.slice(i + 1));
  return Number.isInteger(port) && port > 0 && port < 65536 ? [text.slice(0, i), port] : [text, undefined];
}

/** Collects refused names from audit lines (`repeat` and `suppressed` summaries included). */
export class DeniedNames {
  readonly asked = new Map<string, Asked>();
  /** anyReason: every refusal of a name counts (logs summary), not only the learnable ones (suggest). */
  constructor(private readonly opts: { anyReason?: boolean } = {}) {}
  add(e: AuditLine): void {
    if (e.decision !== 'deny') return;
    const of = e.event === 'repeat' || e.event === 'suppressed' ? e.of : e.event;
    if (of !== 'dns' && of !== 'connect' && of !== 'http') return;
    if (e.event === 'suppressed') {
      // Only its first names are known (each counted once); the rest of its count is not attributable.
      for (const n of Array.isArray(e.sample) ? e.sample : []) {
        // A proxy sample is `host:port` (proxy/audit-summary.ts): the name and the port are read apart.
        const [raw, port] = of === 'dns' ? [String(n), undefined] : splitHostPort(String(n));
        this.note(raw, port, 1, e.client);
      }
      return;
    }
    if (!this.opts.anyReason && !LEARNABLE.has(String(e.reason))) return;
    const n = e.event === 'repeat' ? Number(e.count) || 0 : 1;
    const raw = of === 'dns' ? e.name : e.host;
    this.note(String(raw ?? ''), of === 'dns' ? undefined : Number(e.port), n, e.client);
  }
  /** `port`: as asked (80 and 443, the ports a name's rule allows without one, are not kept). */
  private note(raw: string, asked: number | undefined, count: number, client: unknown): void {
    const port = asked === 443 || asked === 80 || !asked ? undefined : asked;
    const n = normalizeName(raw.replace(/\.$/, ''));
    if (!n.ok) return;
    const key = port ? `${n.name}:${port}` : n.name;
    const a = this.asked.get(key) ?? { name: n.name, port, count: 0, clients: new Set<string>() };
    a.count += count;
    if (typeof client === 'string' && client) a.clients.add(client);
    this.asked.set(key, a);
  }
}

export interface Proposal {
  rule: string;
  count: number;
  names: string[];
  clients: string[];
}

/** The longest common parent of names (by labels), e.g. a.cdn.x.com, b.cdn.x.com → cdn.x.com. */
function commonParent(names: string[]): string {
  const split = names.map((n) => n.split('.').reverse());
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const l = split[0]![i];
    if (l === undefined || !split.every((s) => s[i] === l)) break;
    out.push(l);
  }
  return out.reverse().join('.');
}

/**
 * Proposals, most asked first. `allowed(name, port)` says whether the current allowlist already allows
 * it (such names are left out: allowed since, or by another source).
 */
export function propose(asked: Iterable<Asked>, allowed: (name: string, port?: number) => boolean = () => false, collapse = 3): Proposal[] {
  const groups = new Map<string, Asked[]>();
  for (const a of asked) {
    if (allowed(a.name, a.port)) continue;
    const site = getDomain(a.name, { allowPrivateDomains: true });
    if (!site) continue; // a public suffix itself, or no registrable domain: nothing narrow covers it
    const key = `${site}${a.port ? `:${a.port}` : ''}`;
    groups.set(key, [...(groups.get(key) ?? []), a]);
  }
  const out: Proposal[] = [];
  for (const list of groups.values()) {
    const port = list[0]!.port;
    const names = [...new Set(list.map((a) => a.name))].sort();
    const add = (body: string, of: Asked[]) => {
      const rule = port ? `${body}:${port}` : body;
      if (!ruleText.safeParse(rule).success) return;
      out.push({
        rule,
        count: of.reduce((n, a) => n + a.count, 0),
        names: [...new Set(of.map((a) => a.name))].sort(),
        clients: [...new Set(of.flatMap((a) => [...a.clients]))].sort(),
      });
    };
    if (names.length < collapse) {
      for (const name of names)
        add(
          name,
          list.filter((a) => a.name === name),
        );
      continue;
    }
    // Every name of the group ends in its site, so their common parent is the site or below it.
    const parent = commonParent(names);
    add(names.includes(parent) ? `.${parent}` : `*.${parent}`, list);
  }
  return out.sort((a, b) => b.count - a.count || a.rule.localeCompare(b.rule));
}
