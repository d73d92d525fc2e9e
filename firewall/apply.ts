// Applying the firewall: the only place that runs iptables, ip6tables, ipset and sysctl (through execa).
// Apply is one restore transaction per table, idempotent, verified by reading back; teardown removes
// exactly what apply added.
import { execa } from 'execa';
import {
  BUILTINS,
  ALLOW_SET,
  PORT_SET,
  allowSetSpec,
  parseSave,
  parseSetHeader,
  parseSetMembers,
  renderApply,
  renderPorts,
  renderSets,
  renderTeardown,
  v4Rules,
  v6Rules,
  type Builtin,
  type FirewallPlan,
} from './rules.js';
import { tableDifferences } from './compare.js';
import { v4Network, v4Number, v4String } from '../proxy/address.js';

/** Run a command (optionally with standard input) and return its standard output; throws on failure. */
export type Exec = (cmd: string, args: string[], input?: string) => Promise<string>;

export const execDirect: Exec = async (cmd, args, input) =>
  String((await execa(cmd, args, { input, timeout: 15_000, stripFinalNewline: false })).stdout);

export class FirewallError extends Error {
  override readonly name = 'FirewallError';
  readonly code = 'ERR_FIREWALL';
}

/** Run one step; a failure becomes a FirewallError that says which step and why. */
async function step(what: string, run: () => Promise<string>): Promise<string> {
  try {
    return await run();
  } catch (err) {
    const e = err as { stderr?: string; shortMessage?: string; message: string; code?: string };
    const why = e.code === 'ENOENT' ? 'command not found (is it installed?)' : e.stderr?.trim() || e.shortMessage || e.message;
    throw new FirewallError(`${what} failed: ${why}`);
  }
}

const V6_SYSCTLS = ['net.ipv6.conf.all.disable_ipv6', 'net.ipv6.conf.default.disable_ipv6'];
const ALL_DROP: Record<Builtin, 'DROP'> = { INPUT: 'DROP', FORWARD: 'DROP', OUTPUT: 'DROP' };

/** What apply changed that teardown must put back. */
export interface Applied {
  /** ip6tables built-in policies before the first apply (ACCEPT when a previous run's chains were found). */
  v6Policies: Partial<Record<Builtin, string>>;
  /** IPv6 sysctls before apply; absent when they could not be read or set. */
  sysctls: Record<string, string>;
  /** Could IPv6 be disabled by sysctl in this namespace? */
  ipv6Disabled: boolean;
}

export async function applyFirewall(plan: FirewallPlan, ports: readonly number[], exec: Exec = execDirect): Promise<Applied> {
  const sets = (await step('ipset list', () => exec('ipset', ['list', '-n']))).split('\n').filter(Boolean);
  await step('ipset restore (create the sets)', () => exec('ipset', ['restore'], renderSets(plan, sets, ports)));

  const v4 = parseSave(await step('iptables-save', () => exec('iptables-save', ['-t', 'filter'])));
  await step('iptables-restore', () => exec('iptables-restore', ['--noflush'], renderApply(v4Rules(plan), v4)));

  const v6 = parseSave(await step('ip6tables-save', () => exec('ip6tables-save', ['-t', 'filter'])));
  const fresh = v6.chains.length === 0;
  const v6Policies = Object.fromEntries(BUILTINS.map((b) => [b, fresh ? (v6.policies[b] ?? 'ACCEPT') : 'ACCEPT']));
  await step('ip6tables-restore', () => exec('ip6tables-restore', ['--noflush'], renderApply(v6Rules(), v6, ALL_DROP)));

  // Disable IPv6 where the namespace lets us (a container's /proc/sys is often read-only): the ip6tables
  // policies above already drop everything, this removes the addresses too.
  const sysctls: Record<string, string> = {};
  let ipv6Disabled = true;
  try {
    // Read all first: writing `all` changes `default` too.
    for (const key of V6_SYSCTLS) sysctls[key] = (await exec('sysctl', ['-n', key])).trim();
    for (const key of V6_SYSCTLS) await exec('sysctl', ['-q', '-w', `${key}=1`]);
  } catch {
    ipv6Disabled = false;
  }
  await verifyFirewall(plan, ports, exec);
  return { v6Policies, sysctls, ipv6Disabled };
}

/** Read everything back and compare with what the plan says; throws a FirewallError listing the differences. */
export async function verifyFirewall(plan: FirewallPlan, ports: readonly number[], exec: Exec = execDirect): Promise<void> {
  const problems = [
    ...tableDifferences('iptables', parseSave(await step('iptables-save', () => exec('iptables-save', ['-t', 'filter']))), v4Rules(plan)),
    ...tableDifferences(
      'ip6tables',
      parseSave(await step('ip6tables-save', () => exec('ip6tables-save', ['-t', 'filter']))),
      v6Rules(),
      'DROP',
    ),
  ];

  const allow = parseSetHeader(await step('ipset list', () => exec('ipset', ['list', '-t', ALLOW_SET])));
  const want = allowSetSpec(plan).split(' ');
  if (allow.type !== want[0]) problems.push(`${ALLOW_SET}: type ${allow.type}, want ${want[0]}`);
  for (const k of ['maxelem', 'timeout', 'family']) {
    const w = want[want.indexOf(k) + 1];
    if (allow.header[k] !== w) problems.push(`${ALLOW_SET}: ${k} ${allow.header[k]}, want ${w}`);
  }
  const members = parseSetMembers(await step('ipset list', () => exec('ipset', ['list', PORT_SET]))).map(Number);
  if (members.join(',') !== [...ports].sort((a, b) => a - b).join(','))
    problems.push(`${PORT_SET}: ports ${members.join(',')}, want ${ports.join(',')}`);
  if (problems.length) throw new FirewallError(`the firewall read back differs from what was applied:\n  ${problems.join('\n  ')}`);
}

/** Replace the allowed TCP ports (on reload). */
export async function setPorts(ports: readonly number[], exec: Exec = execDirect): Promise<void> {
  await step('ipset restore (ports)', () => exec('ipset', ['restore'], renderPorts(ports)));
}

/** Remove exactly what apply added: our jumps and chains, the two sets, the IPv6 policies and sysctls. */
export async function teardownFirewall(applied: Pick<Applied, 'v6Policies' | 'sysctls'>, exec: Exec = execDirect): Promise<void> {
  const v4 = parseSave(await step('iptables-save', () => exec('iptables-save', ['-t', 'filter'])));
  await step('iptables-restore (teardown)', () => exec('iptables-restore', ['--noflush'], renderTeardown(v4)));
  const v6 = parseSave(await step('ip6tables-save', () => exec('ip6tables-save', ['-t', 'filter'])));
  await step('ip6tables-restore (teardown)', () => exec('ip6tables-restore', ['--noflush'], renderTeardown(v6, applied.v6Policies)));
  const sets = (await step('ipset list', () => exec('ipset', ['list', '-n']))).split('\n');
  for (const name of [ALLOW_SET, PORT_SET]) {
    if (sets.includes(name)) await step(`ipset destroy ${name}`, () => exec('ipset', ['destroy', name]));
  }
  for (const [key, value] of Object.entries(applied.sysctls)) {
    await step(`sysctl ${key}`, () => exec('sysctl', ['-q', '-w', `${key}=${value}`]));
  }
}

/** The interface that holds an IPv4 address, from `ip -o -4 addr show`. */
export async function interfaceOf(address: string, exec: Exec = execDirect): Promise<string | undefined> {
  const out = await step('ip addr', () => exec('ip', ['-o', '-4', 'addr', 'show']));
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet ([0-9.]+)\//.exec(line);
    if (m && m[2] === address) return m[1];
  }
  return undefined;
}

/**
 * The IPv4 networks of an interface (CIDRs with their network address, as iptables-save prints a
 * source): each address's prefix, or its peer's on a point-to-point address. Pure.
 */
export function networksOf(ipAddrShow: string): string[] {
  const out: string[] = [];
  for (const line of ipAddrShow.split('\n')) {
    const m = /\binet ([0-9.]+)(?:\/(\d+))?(?: peer ([0-9.]+)\/(\d+))?/.exec(line);
    if (!m) continue;
    const [ip, bits] = m[3] ? [m[3], Number(m[4])] : [m[1]!, m[2] === undefined ? 32 : Number(m[2])];
    const cidr = `${v4String(v4Network(v4Number(ip), bits))}/${bits}`;
    if (!out.includes(cidr)) out.push(cidr);
  }
  return out;
}

/** The IPv4 networks on an interface (networksOf). */
export async function interfaceNetworks(name: string, exec: Exec = execDirect): Promise<string[]> {
  return networksOf(await step('ip addr', () => exec('ip', ['-o', '-4', 'addr', 'show', 'dev', name])));
}

/** Does the interface exist? */
export async function interfaceExists(name: string, exec: Exec = execDirect): Promise<boolean> {
  return exec('ip', ['-o', 'link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );
}
