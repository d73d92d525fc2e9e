// The one comparison of a filter table as read back (`iptables-save`) with what was planned: used by
// apply (verify after apply: firewall/apply.ts) and by the periodic drift check (firewall/watch.ts, whose
// finding /healthz reports). Each difference names the family and the chain. Pure.
import { BUILTINS, CHAINS, type Builtin, type SavedTable } from './rules.js';

export type Family = 'iptables' | 'ip6tables';

/**
 * How `saved` differs from the plan: each built-in chain jumps to ours exactly once, as its first rule,
 * our chain holds exactly the planned rules in order, and (when given) the built-in's policy is `policy`.
 * Empty when it is all in place.
 */
export function tableDifferences(family: Family, saved: SavedTable, want: Record<Builtin, readonly string[]>, policy?: string): string[] {
  const problems: string[] = [];
  for (const b of BUILTINS) {
    if (saved.jumps[b] !== 1) problems.push(`${family} ${b}: ${saved.jumps[b]} jumps to ${CHAINS[b]}, want 1`);
    else if (!saved.jumpFirst[b]) problems.push(`${family} ${b}: the jump to ${CHAINS[b]} is not the first rule`);
    if (policy && saved.policies[b] !== policy) problems.push(`${family} ${b}: policy ${saved.policies[b]}, want ${policy}`);
    const got = saved.rules[b];
    if (got.length !== want[b].length || got.some((r, i) => r !== want[b][i])) {
      const missing = want[b].filter((r) => !got.includes(r));
      const extra = got.filter((r) => !want[b].includes(r));
      problems.push(
        `${family} ${CHAINS[b]} differs: missing [${missing.join(' | ')}] unexpected [${extra.join(' | ')}]${!missing.length && !extra.length ? ' (order)' : ''}`,
      );
    }
  }
  return problems;
}
