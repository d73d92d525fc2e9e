// Does a rule open a host of the risk notes (cli/risk-notes.ts)? Pure. A rule opens a noted host when
// some name is covered by both: the rule's own spelling does not matter (case, trailing dot, punycode,
// "*.", "." all go through the policy's own parser), and a wide rule over a noted host opens it too.
import { ruleText, type RuleBody } from '../proxy/policy/rules.js';
import { RISK_NOTES, type RiskNote } from './risk-notes.js';

function covers(r: Pick<RuleBody, 'name' | 'scope'>, host: string): boolean {
  const under = host.endsWith(`.${r.name}`);
  return r.scope === 'exact' ? host === r.name : r.scope === 'subdomains' ? under : host === r.name || under;
}

/** Is there a name both rules cover? (Checked on their base names and one name below each.) */
export function overlaps(a: Pick<RuleBody, 'name' | 'scope'>, b: Pick<RuleBody, 'name' | 'scope'>): boolean {
  const probes = [a.name, b.name, `x--probe.${a.name}`, `x--probe.${b.name}`];
  return probes.some((h) => covers(a, h) && covers(b, h));
}

/**
 * A note's host as a name and scope. Not through the rule parser: some noted hosts are public suffixes
 * (a bucket service, a tunnel domain), which no rule may name but many rules can lie under.
 */
export function noteScope(host: string): Pick<RuleBody, 'name' | 'scope'> {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h.startsWith('*.')) return { name: h.slice(2), scope: 'subdomains' };
  if (h.startsWith('.')) return { name: h.slice(1), scope: 'tree' };
  return { name: h, scope: 'exact' };
}

const NOTES = RISK_NOTES.map((note) => ({ note, body: noteScope(note.host) }));

/** The notes an allow rule touches (none for a deny rule or an invalid one). */
export function risksOf(rule: string): RiskNote[] {
  const r = ruleText.safeParse(rule);
  if (!r.success || r.data.deny) return [];
  return NOTES.filter((n) => overlaps(r.data, n.body)).map((n) => n.note);
}
