// The firewall as text: pure generation of `iptables-restore`, `ip6tables-restore` and `ipset restore`
// input, and the parsing of what `iptables-save` reads back. No I/O.
//
// Rules are written in the exact form `iptables-save` prints them, so that verification is a plain
// comparison of lines. Every rule that drops or rejects carries a comment `codex-egress:<id>`, which is
// how its packet counters are found again.
import { FORBIDDEN_V4 } from '../proxy/address.js';
import { DEFAULT_PORT, type Allowlist } from '../proxy/policy/allowlist.js';

/** Our chains, one per built-in chain of the filter table, in IPv4 and IPv6 alike. */
export const CHAINS = {
  INPUT: 'CODEX-EGRESS-IN',
  FORWARD: 'CODEX-EGRESS-FWD',
  OUTPUT: 'CODEX-EGRESS-OUT',
} as const;
export type Builtin = keyof typeof CHAINS;
export const BUILTINS = Object.keys(CHAINS) as Builtin[];

/** The IPv4 addresses the gateway may connect to (filled from DNS answers, per-entry timeout). */
export const ALLOW_SET = 'codex-egress-allow';
/** The TCP ports the gateway may connect to (derived from the allowlist). */
export const PORT_SET = 'codex-egress-ports';

export const COMMENT_PREFIX = 'codex-egress:';

export type Family = 'ipv4' | 'ipv6';

export interface FirewallPlan {
  /** The interface the sandbox reaches the gateway on. */
  sandboxInterface: string;
  /** The address DNS and proxy listen on; 0.0.0.0 means any address of the sandbox interface. */
  listen: string;
  dnsPort: number;
  proxyPort: number;
  upstreams: ReadonlyArray<{ host: string; port: number }>;
  /** Maximum number of addresses in the allow set. */
  setSize: number;
  /** Default (and minimum) lifetime of an allow-set entry, in seconds. */
  minTtl: number;
  /** Transparent mode's pool (an IPv4 CIDR): TCP to it on the allowed ports is accepted, UDP rejected at once. */
  transparentPool?: string;
  /**
   * The IPv4 networks of the sandbox interface (CIDRs, network address): the only sources accepted from
   * it. A sandbox able to forge its source (CAP_NET_RAW) is then refused at the kernel (in-drop). Absent:
   * any source on that interface (plans built by hand).
   */
  sandboxSources?: readonly string[];
}

/** A rule that drops or rejects, as reported in /healthz and `firewall` audit events. */
export interface DropRule {
  /** Stable id, also the rule's comment (`codex-egress:<id>`). */
  id: string;
  family: Family;
  chain: Builtin;
  target: 'DROP' | 'REJECT';
}

const comment = (id: string) => `-m comment --comment "${COMMENT_PREFIX}${id}"`;
const tcp = (port: number) => `-p tcp -m tcp --dport ${port}`;
const udp = (port: number) => `-p udp -m udp --dport ${port}`;
const REJECT = '-j REJECT --reject-with icmp-port-unreachable';

/** The rules of our three IPv4 chains, keyed by chain, in iptables-save form (without "-A CHAIN"). */
export function v4Rules(plan: FirewallPlan): Record<Builtin, string[]> {
  const { sandboxInterface: sif } = plan;
  const to = plan.listen === '0.0.0.0' ? '' : `-d ${plan.listen}/32 `;
  const upstreams = dedupe(plan.upstreams.map((u) => `${u.host}:${u.port}`)).map((s) => {
    const [host, port] = s.split(':');
    return { host: host!, port: Number(port) };
  });
  // From the sandbox interface, its own networks' sources only (ATTACK6: forged sources die in in-drop).
  const froms = plan.sandboxSources?.length ? plan.sandboxSources.map((n) => `-s ${n} `) : [''];
  return {
    INPUT: [
      '-i lo -j ACCEPT',
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      ...froms.flatMap((from) => [
        `${from}${to}-i ${sif} ${udp(plan.dnsPort)} -j ACCEPT`,
        `${from}${to}-i ${sif} ${tcp(plan.dnsPort)} -j ACCEPT`,
        `${from}${to}-i ${sif} ${tcp(plan.proxyPort)} -j ACCEPT`,
      ]),
      ...(plan.transparentPool ? froms.flatMap((from) => transparentInput(plan.transparentPool!, sif, from)) : []),
      `${comment('in-drop')} -j DROP`,
    ],
    FORWARD: [`${comment('forward-drop')} -j DROP`],
    OUTPUT: [
      '-o lo -j ACCEPT',
      // A reply to a connection someone opened toward the gateway goes back where it came from: only the
      // sandbox can open one, so it leaves on the sandbox's interface. A sandbox that forges its source
      // address (any address, the LAN's or the internet's) would otherwise have the gateway's answers
      // (a DNS reply holding the name it asked for, a SYN-ACK, an ICMP error) sent there: a channel out.
      `! -o ${sif} -m conntrack --ctdir REPLY ${comment('out-reply-escape')} -j DROP`,
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      // The upstream resolvers, on their DNS port only: the one exception to the forbidden ranges.
      ...upstreams.flatMap((u) => [`-d ${u.host}/32 ${udp(u.port)} -j ACCEPT`, `-d ${u.host}/32 ${tcp(u.port)} -j ACCEPT`]),
      // Never reachable, even when an address of these ranges lands in the allow set.
      ...FORBIDDEN_V4.map((cidr) => `-d ${cidr} ${comment(`out-forbidden-${cidr}`)} ${REJECT}`),
      `-p tcp -m set --match-set ${ALLOW_SET} dst -m set --match-set ${PORT_SET} dst -j ACCEPT`,
      `${comment('out-reject')} ${REJECT}`,
    ],
  };
}

/**
 * Transparent mode's INPUT rules: the pool addresses on the allowed ports (the port set, as for the way
 * out), and UDP to the pool refused with an ICMP port unreachable, so a QUIC client falls back to TCP at once.
 */
export function transparentInput(pool: string, sif: string, from = ''): string[] {
  return [
    `${from}-d ${pool} -i ${sif} -p tcp -m set --match-set ${PORT_SET} dst -j ACCEPT`,
    `${from}-d ${pool} -i ${sif} -p udp ${comment('in-pool-udp')} ${REJECT}`,
  ];
}

/** IPv6: nothing in, through or out but loopback; the built-in policies are DROP as well. */
export function v6Rules(): Record<Builtin, string[]> {
  return {
    INPUT: ['-i lo -j ACCEPT', `${comment('in6-drop')} -j DROP`],
    FORWARD: [`${comment('forward6-drop')} -j DROP`],
    OUTPUT: ['-o lo -j ACCEPT', `${comment('out6-drop')} -j DROP`],
  };
}

/** The drop and reject rules of a rule set, with the ids their counters are reported under. */
export function dropRules(rules: Record<Builtin, string[]>, family: Family): DropRule[] {
  return BUILTINS.flatMap((chain) =>
    rules[chain].flatMap((r) => {
      const id = commentId(r);
      const target = /-j (DROP|REJECT)\b/.exec(r)?.[1] as DropRule['target'] | undefined;
      return id && target ? [{ id, family, chain, target }] : [];
    }),
  );
}

const commentId = (rule: string) => new RegExp(`--comment "?${COMMENT_PREFIX}([^" ]+)"?`).exec(rule)?.[1];

/** What is in the table now, as read by `iptables-save -t filter`: our jumps and chains, and the policies. */
export interface SavedTable {
  policies: Partial<Record<string, string>>;
  /** Rules of our chains, by built-in chain. */
  rules: Record<Builtin, string[]>;
  /** Our chains that exist. */
  chains: string[];
  /** How many times each built-in chain jumps to our chain. */
  jumps: Record<Builtin, number>;
  /** Is the first rule of each built-in chain the jump to ours? */
  jumpFirst: Record<Builtin, boolean>;
}

/** Parse `iptables-save [-c] -t filter` output (with or without counters). */
export function parseSave(text: string): SavedTable {
  const ours = new Map(BUILTINS.map((b) => [CHAINS[b], b] as const));
  const t: SavedTable = {
    policies: {},
    rules: { INPUT: [], FORWARD: [], OUTPUT: [] },
    chains: [],
    jumps: { INPUT: 0, FORWARD: 0, OUTPUT: 0 },
    jumpFirst: { INPUT: false, FORWARD: false, OUTPUT: false },
  };
  const seen = new Set<string>();
  let inFilter = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (!inFilter) continue;
    const chainDecl = /^:(\S+) (\S+)/.exec(line);
    if (chainDecl) {
      if (ours.has(chainDecl[1] as never)) t.chains.push(chainDecl[1]!);
      else if (chainDecl[2] !== '-') t.policies[chainDecl[1]!] = chainDecl[2];
      continue;
    }
    const rule = /^(?:\[\d+:\d+\] )?-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, body] = rule as unknown as [string, string, string];
    const builtin = ours.get(chain as never);
    if (builtin) t.rules[builtin].push(body);
    else if ((BUILTINS as string[]).includes(chain)) {
      const b = chain as Builtin;
      const isJump = body === `-j ${CHAINS[b]}`;
      if (isJump) t.jumps[b]++;
      if (!seen.has(b)) t.jumpFirst[b] = isJump;
      seen.add(b);
    }
  }
  return t;
}

/** Packet and byte counters of our commented rules, from `iptables-save -c -t filter`. */
export function parseCounters(text: string): Map<string, { packets: number; bytes: number }> {
  const out = new Map<string, { packets: number; bytes: number }>();
  for (const line of text.split('\n')) {
    const m = /^\[(\d+):(\d+)\] -A CODEX-EGRESS-\S+ (.*)$/.exec(line.trim());
    const id = m && commentId(m[3]!);
    if (m && id) out.set(id, { packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/**
 * One `iptables-restore --noflush` transaction that installs (or re-installs) our chains: each chain is
 * declared (which empties it if it exists) and filled, stale jumps are deleted, and one jump is put first
 * in each built-in chain. Built-in policies are set when given (IPv6). All or nothing.
 */
export function renderApply(
  rules: Record<Builtin, string[]>,
  current: Pick<SavedTable, 'jumps'>,
  policies?: Partial<Record<Builtin, 'DROP' | 'ACCEPT'>>,
): string {
  const lines = ['*filter'];
  for (const b of BUILTINS) if (policies?.[b]) lines.push(`:${b} ${policies[b]} [0:0]`);
  for (const b of BUILTINS) lines.push(`:${CHAINS[b]} - [0:0]`);
  for (const b of BUILTINS) {
    for (let i = 0; i < current.jumps[b]; i++) lines.push(`-D ${b} -j ${CHAINS[b]}`);
    lines.push(`-I ${b} 1 -j ${CHAINS[b]}`);
  }
  for (const b of BUILTINS) for (const r of rules[b]) lines.push(`-A ${CHAINS[b]} ${r}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** One transaction that removes our jumps and chains, and puts back the given built-in policies. */
export function renderTeardown(current: Pick<SavedTable, 'jumps' | 'chains'>, policies?: Partial<Record<Builtin, string>>): string {
  const lines = ['*filter'];
  for (const b of BUILTINS) if (policies?.[b]) lines.push(`:${b} ${policies[b]} [0:0]`);
  for (const b of BUILTINS) for (let i = 0; i < current.jumps[b]; i++) lines.push(`-D ${b} -j ${CHAINS[b]}`);
  for (const c of current.chains) lines.push(`-F ${c}`, `-X ${c}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The TCP ports the allowlist allows: a rule's own port, or 443 and 80 for a rule without one. */
export function allowedPorts(allowlist: Pick<Allowlist, 'rules'>): number[] {
  const ports = new Set<number>();
  for (const r of allowlist.rules) {
    if (r.deny) continue;
    if (r.port === undefined) Object.values(DEFAULT_PORT).forEach((p) => ports.add(p));
    else ports.add(r.port);
  }
  return [...ports].sort((a, b) => a - b);
}

/** `ipset` creation parameters, as `ipset save` prints them (minus the kernel's own additions). */
export const allowSetSpec = (plan: Pick<FirewallPlan, 'setSize' | 'minTtl'>) =>
  `hash:ip family inet hashsize 1024 maxelem ${plan.setSize} timeout ${plan.minTtl}`;
export const PORT_SET_SPEC = 'bitmap:port range 1-65535';

/**
 * `ipset restore` input that creates both sets empty, with the plan's parameters. A set that already
 * exists (a previous run) is replaced by swapping in a fresh one, so rules that refer to it stay valid.
 */
export function renderSets(plan: FirewallPlan, existing: readonly string[], ports: readonly number[]): string {
  const lines: string[] = [];
  const fresh = (name: string, spec: string, members: string[]) => {
    const tmp = `${name}-new`;
    if (existing.includes(tmp)) lines.push(`destroy ${tmp}`);
    if (existing.includes(name)) {
      lines.push(`create ${tmp} ${spec}`, ...members.map((m) => `add ${tmp} ${m}`), `swap ${tmp} ${name}`, `destroy ${tmp}`);
    } else {
      lines.push(`create ${name} ${spec}`, ...members.map((m) => `add ${name} ${m}`));
    }
  };
  fresh(ALLOW_SET, allowSetSpec(plan), []);
  fresh(PORT_SET, PORT_SET_SPEC, ports.map(String));
  return `${lines.join('\n')}\n`;
}

/** Replace the port set's members in one `ipset restore`: build aside, swap, destroy. */
export function renderPorts(ports: readonly number[]): string {
  const tmp = `${PORT_SET}-new`;
  return `${[`create ${tmp} ${PORT_SET_SPEC} -exist`, `flush ${tmp}`, ...ports.map((p) => `add ${tmp} ${p}`), `swap ${tmp} ${PORT_SET}`, `destroy ${tmp}`].join('\n')}\n`;
}

/** Add addresses to the allow set (refreshing the timeout of those already there). */
export function renderAdds(entries: ReadonlyArray<{ ip: string; timeout: number }>): string {
  return entries.map((e) => `add ${ALLOW_SET} ${e.ip} timeout ${e.timeout} -exist\n`).join('');
}

/** Remove addresses from the allow set (absent ones are fine). */
export function renderDels(ips: readonly string[]): string {
  return ips.map((ip) => `del ${ALLOW_SET} ${ip} -exist\n`).join('');
}

/** Parse `ipset list -t NAME` (the header) into its fields. */
export function parseSetHeader(text: string): { type?: string; header: Record<string, string> } {
  const type = /^Type: (\S+)/m.exec(text)?.[1];
  const headerLine = /^Header: (.*)$/m.exec(text)?.[1] ?? '';
  const words = headerLine.split(/\s+/).filter(Boolean);
  const header: Record<string, string> = {};
  for (let i = 0; i < words.length; i += 2) header[words[i]!] = words[i + 1] ?? '';
  return { type, header };
}

/** Members of `ipset list NAME` (ports or addresses, with any "timeout N" stripped). */
export function parseSetMembers(text: string): string[] {
  const at = text.indexOf('Members:');
  if (at < 0) return [];
  return text
    .slice(at + 'Members:'.length)
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

function dedupe<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}
