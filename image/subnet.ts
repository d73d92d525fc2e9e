// The internal network's /24: the one derived from the project (names.ts) when it is free, else the next
// free one, so many projects run side by side. Docker's `network create` is the arbiter: two `up`s that
// pick the same /24 at once get "Pool overlaps" for the second, which then takes the next.
// An explicit --subnet is kept as given (an overlap is an error naming it).
import { docker, dockerResult, DockerError } from './docker.js';
import { internalNetworkArgs } from './args.js';
import { projectFor, type Project } from './names.js';

/** How many /24s `up` tries before giving up (bounded: every try is one `docker network create`). */
export const MAX_SUBNET_TRIES = 64;

/** "a.b.c.d/n" → [first address as a number, prefix length]; undefined when it is not IPv4 CIDR. */
export function parseCidr(cidr: string): [number, number] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr.trim());
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (o.some((x) => x > 255) || bits > 32) return undefined;
  const ip = ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [(ip & mask) >>> 0, bits];
}

/** Do two IPv4 CIDRs share an address? (Anything that is not IPv4 CIDR never overlaps.) Pure. */
export function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y) return false;
  const bits = Math.min(x[1], y[1]);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (x[0] & mask) >>> 0 === (y[0] & mask) >>> 0;
}

/**
 * The /24s to try, in order: the preferred one (derived from the project), then the following ones of
 * 10.213.0.0/16 (wrapping), leaving out any that overlaps a subnet in use. Pure.
 */
export function subnetCandidates(preferred: string, used: readonly string[], count = MAX_SUBNET_TRIES): string[] {
  const m = /^10\.213\.(\d{1,3})\.0\/24$/.exec(preferred);
  const start = m ? Number(m[1]) : 0;
  const all = [preferred, ...Array.from({ length: 256 }, (_, i) => `10.213.${(start + i) % 256}.0/24`)];
  return [...new Set(all)].filter((s) => !used.some((u) => overlaps(s, u))).slice(0, count);
}

/** Every IPv4 subnet of every Docker network on this engine. */
export async function usedSubnets(): Promise<string[]> {
  const ids = (await docker(['network', 'ls', '-q'])).split('\n').filter(Boolean);
  if (!ids.length) return [];
  const r = await dockerResult(['network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', ...ids], {
    timeoutMs: 30_000,
  });
  return r.stdout.split(/\s+/).filter((s) => parseCidr(s) !== undefined);
}

/** The subnet of the project's internal network as Docker has it, or undefined when it does not exist. */
export async function networkSubnet(p: Project): Promise<string | undefined> {
  const r = await dockerResult(['network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', p.internalNetwork], {
    timeoutMs: 30_000,
  });
  if (r.exitCode !== 0) return undefined;
  return r.stdout.split(/\s+/).find((s) => /^\d+\.\d+\.\d+\.0\/24$/.test(s));
}

/**
 * The project with the addresses its running appliance actually has: the internal network may be on
 * another /24 than the derived one (taken when that was in use). Unchanged when there is no network.
 */
export async function liveProject(p: Project): Promise<Project> {
  const s = await networkSubnet(p);
  return s && s !== p.subnet ? projectFor(p.workdir, s) : p;
}

const isOverlap = (e: unknown) => e instanceof DockerError && /overlap/i.test(e.stderr);

/**
 * Create the project's internal network on a free /24 and return the project with its addresses.
 * `fixed`: the subnet was given (--subnet): only that one, an overlap is an error saying so.
 */
export async function createInternalNetwork(p: Project, fixed: boolean, log: (s: string) => void): Promise<Project> {
  if (fixed) {
    try {
      await docker(internalNetworkArgs(p));
      return p;
    } catch (e) {
      if (isOverlap(e))
        throw new Error(
          `--subnet ${p.subnet} overlaps a Docker network that exists already: choose another /24, or leave --subnet out to have a free one picked`,
        );
      throw e;
    }
  }
  const tried: string[] = [];
  for (const subnet of subnetCandidates(p.subnet, await usedSubnets())) {
    const q = projectFor(p.workdir, subnet);
    try {
      await docker(internalNetworkArgs(q));
      if (subnet !== p.subnet) log(`${p.subnet} is in use: the internal network takes ${subnet}`);
      return q;
    } catch (e) {
      // Taken between the listing and the create (another `up` at the same moment): the next one.
      if (!isOverlap(e)) throw e;
      tried.push(subnet);
    }
  }
  throw new Error(
    `no free /24 for the internal network (tried ${tried.length ? tried.join(', ') : 'none: every /24 of 10.213.0.0/16 is in use'}): give one with --subnet`,
  );
}
