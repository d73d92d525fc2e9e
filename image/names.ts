// Everything `up` creates is named after the project directory, so two projects run side by side and
// `down` removes exactly what `up` made. Pure: no I/O.
import { createHash } from 'node:crypto';
import { basename, resolve } from 'node:path';

/** The label every container and network made by `up` carries, valued with the project name. */
export const PROJECT_LABEL = 'dev.codex-egress.project';
/** The label holding the project directory on the host. */
export const WORKDIR_LABEL = 'dev.codex-egress.workdir';

export interface Project {
  /** Absolute project directory (the workdir). */
  workdir: string;
  /** `codex-egress-<dir>-<hash>`: unique per directory, valid as a Docker name. */
  name: string;
  gateway: string;
  sandbox: string;
  internalNetwork: string;
  egressNetwork: string;
  /** The internal network: a /24 derived from the name, so projects do not collide (override: --subnet). */
  subnet: string;
  gatewayIp: string;
  sandboxIp: string;
}

/** The project for a directory; `subnet` overrides the derived /24 (it must be an IPv4 /24). */
export function projectFor(dir: string, subnet?: string): Project {
  const workdir = resolve(dir);
  const hash = createHash('sha256').update(workdir).digest();
  const slug =
    basename(workdir)
      .toLowerCase()
      .replace(/[^a-z0-9_.-]+/g, '-')
      .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
      .slice(0, 24) || 'root';
  const name = `codex-egress-${slug}-${hash.subarray(0, 3).toString('hex')}`;
  const net = subnet ?? `10.213.${hash[3]!}.0/24`;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(net);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new Error(`subnet "${net}" must be an IPv4 /24 such as 10.213.7.0/24`);
  const prefix = `${m[1]}.${m[2]}.${m[3]}`;
  return {
    workdir,
    name,
    gateway: `${name}-gateway`,
    sandbox: `${name}-sandbox`,
    internalNetwork: `${name}-internal`,
    egressNetwork: `${name}-egress`,
    subnet: net,
    // .1 is the bridge's own address in Docker's IPAM (never configured: inhibit_ipv4), so start at .2.
    gatewayIp: `${prefix}.2`,
    sandboxIp: `${prefix}.3`,
  };
}
