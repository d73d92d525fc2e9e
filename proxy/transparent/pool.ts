// Transparent mode's pool: which gateway address stands for which allowed name. Pure and bounded; no I/O.
//
// One address per name and one name per address, at any time. An entry lives as long as the last DNS
// answer that handed it out, plus a grace period (a client connects a little after its lookup). Once
// expired, the address stands for no name (a connection to it is refused); it is given to another name
// only after a quarantine, so a client that caches answers longer than their TTL is refused rather
// than connected to some other name.
import { isIPv4 } from 'node:net';
import { v4Network, v4Number, v4String } from '../address.js';

export interface PoolOptions {
  /** How long an entry outlives the TTL of the answer that handed it out (ms). */
  graceMs?: number;
  /** How long an expired or freed address stands for nothing before another name may get it (ms). */
  quarantineMs?: number;
  now?: () => number;
}

export type Assignment = { ok: true; ip: string } | { ok: false; size: number };

interface Entry {
  name: string;
  expires: number;
}

export const POOL_DEFAULTS = { graceMs: 120_000, quarantineMs: 600_000 } as const;
/** The largest pool accepted (a listener per address and port). */
export const MAX_POOL_SIZE = 1024;

export class Pool {
  private readonly byIp = new Map<string, Entry>();
  private readonly byName = new Map<string, string>();
  /** Addresses standing for nothing, with the time from which they may be given out again. */
  private readonly free = new Map<string, number>();
  private readonly opts: Required<PoolOptions>;

  constructor(
    readonly addresses: readonly string[],
    opts: PoolOptions = {},
  ) {
    this.opts = { ...POOL_DEFAULTS, now: () => Date.now(), ...opts };
    for (const ip of addresses) this.free.set(ip, 0);
  }

  get size(): number {
    return this.addresses.length;
  }

  /** The address for `name`, valid for at least `ttlSeconds` (+ grace); the same one while it lives. */
  assign(name: string, ttlSeconds: number): Assignment {
    const now = this.opts.now();
    const expires = now + Math.max(0, ttlSeconds) * 1000 + this.opts.graceMs;
    const held = this.byName.get(name);
    if (held !== undefined) {
      const e = this.byIp.get(held)!;
      if (e.expires > now) {
        e.expires = Math.max(e.expires, expires);
        return { ok: true, ip: held };
      }
    }
    this.expire(now);
    // The address free the longest (never given out first): bounded by the pool's size.
    let pick: string | undefined;
    let earliest = Infinity;
    for (const [ip, from] of this.free) {
      if (from <= now && from < earliest) [pick, earliest] = [ip, from];
    }
    if (pick === undefined) return { ok: false, size: this.size };
    this.free.delete(pick);
    this.byIp.set(pick, { name, expires });
    this.byName.set(name, pick);
    return { ok: true, ip: pick };
  }

  /** The name `ip` stands for now, or undefined (never given out, expired, or freed). */
  nameOf(ip: string): string | undefined {
    const e = this.byIp.get(ip);
    return e && e.expires > this.opts.now() ? e.name : undefined;
  }

  /** The address `name` holds now, if any. */
  addressOf(name: string): string | undefined {
    const ip = this.byName.get(name);
    return ip !== undefined && this.nameOf(ip) === name ? ip : undefined;
  }

  /** Release the addresses of the names `drop` selects (a reload removed them); returns them. They stand for nothing at once and are quarantined from when their entry would have expired. */
  release(drop: (name: string) => boolean): Array<{ ip: string; name: string }> {
    const out: Array<{ ip: string; name: string }> = [];
    const now = this.opts.now();
    for (const [ip, e] of this.byIp) {
      if (!drop(e.name)) continue;
      // Quarantined from the end of the last answer's lifetime, as on expiry: a client may keep that answer.
      this.forget(ip, e, Math.max(now, e.expires));
      out.push({ ip, name: e.name });
    }
    return out;
  }

  /** Live entries (for status and tests). */
  entries(): Array<{ ip: string; name: string; expires: number }> {
    const now = this.opts.now();
    return [...this.byIp].filter(([, e]) => e.expires > now).map(([ip, e]) => ({ ip, name: e.name, expires: e.expires }));
  }

  private expire(now: number): void {
    for (const [ip, e] of this.byIp) if (e.expires <= now) this.forget(ip, e, e.expires);
  }

  private forget(ip: string, e: Entry, since: number): void {
    this.byIp.delete(ip);
    if (this.byName.get(e.name) === ip) this.byName.delete(e.name);
    // Quarantined from the moment it stopped standing for the name.
    this.free.set(ip, since + this.opts.quarantineMs);
  }
}

/**
 * The addresses of a pool given as an IPv4 CIDR (`10.0.0.128/25`): every address but the network and
 * broadcast addresses of a /30 or larger (a /31 or /32 gives all of its one or two addresses).
 */
export function poolAddresses(cidr: string): { ok: true; addresses: string[]; cidr: string } | { ok: false; error: string } {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr.trim());
  const bits = m ? Number(m[2]) : NaN;
  if (!m || !isIPv4(m[1]!) || !(bits >= 0 && bits <= 32))
    return { ok: false, error: `transparent pool "${cidr}" must be an IPv4 CIDR such as 10.0.0.128/25` };
  const base = v4Number(m[1]!);
  if (v4Network(base, bits) !== base)
    return { ok: false, error: `transparent pool "${cidr}": host bits are set (did you mean ${v4String(v4Network(base, bits))}/${bits}?)` };
  const count = 2 ** (32 - bits);
  const [first, last] = bits >= 31 ? [base, base + count - 1] : [base + 1, base + count - 2];
  if (last - first + 1 > MAX_POOL_SIZE)
    return { ok: false, error: `transparent pool "${cidr}" has ${last - first + 1} addresses; at most ${MAX_POOL_SIZE}` };
  const addresses: string[] = [];
  for (let i = first; i <= last; i++) addresses.push(v4String(i));
  return { ok: true, addresses, cidr: `${v4String(base)}/${bits}` };
}

/** The default pool: the upper half of the /24 holding the gateway's listen address (`a.b.c.128/25`). */
export function defaultPool(listen: string): string | undefined {
  if (!isIPv4(listen) || listen === '0.0.0.0') return undefined;
  return `${listen.split('.').slice(0, 3).join('.')}.128/25`;
}

/**
 * The pool a gateway configuration asks for: undefined when transparent mode is off, an error when the
 * pool cannot be used (no way to derive it, not a CIDR, or it holds the gateway's listen address).
 */
export function poolFor(cfg: {
  transparent: boolean;
  transparentPool?: string;
  listen: string;
}): { ok: true; cidr: string; addresses: string[] } | { ok: false; error: string } | undefined {
  if (!cfg.transparent) return undefined;
  const cidr = cfg.transparentPool ?? defaultPool(cfg.listen);
  if (cidr === undefined)
    return {
      ok: false,
      error:
        'transparent mode needs its pool: give --listen with the sandbox-facing address, or --transparent-pool CIDR (or --no-transparent)',
    };
  const p = poolAddresses(cidr);
  if (!p.ok) return p;
  if (p.addresses.includes(cfg.listen))
    return {
      ok: false,
      error: `transparent pool ${p.cidr} holds the listen address ${cfg.listen}: choose a range of the sandbox network the gateway and sandbox do not use`,
    };
  return p;
}
