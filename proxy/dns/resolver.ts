// The resolver behind both the DNS server and the proxy: one TTL cache, one address guard, one firewall hook.
import { isReachable } from '../address.js';
import type { UpstreamResolver } from './upstream.js';
import { allIPv4, RCODE } from './wire.js';

export type Lookup =
  | { status: 'ok'; ips: string[]; ttl: number }
  | { status: 'nodata'; ttl: number }
  | { status: 'nxdomain' }
  /** The answer held a private, loopback, link-local, CGNAT, multicast or reserved address: refused whole. */
  | { status: 'refused'; ips: string[] }
  | { status: 'servfail'; reason: 'upstream-failed' | 'firewall-failed'; detail: string }
  /** The name stopped being allowed (a reload) while it was being resolved: nothing is served. */
  | { status: 'revoked' };

/** Called with every A answer before it is served; the answer waits for it (the firewall fills its set). */
export type OnResolved = (name: string, ips: readonly string[], ttl: number) => Promise<void>;

export interface ResolverOptions {
  onResolved?: OnResolved;
  /**
   * Is the name still allowed now? Asked after the upstream's answer, before it goes to the firewall:
   * a reload may have removed the name meanwhile, and its late answer must not re-add the address.
   */
  allowed?: (name: string) => boolean;
  /** Cache bounds, in seconds: upstream TTLs are clamped into [minTtl, maxTtl]. */
  minTtl?: number;
  maxTtl?: number;
  /** How long NXDOMAIN and refused answers are cached, in seconds. */
  negativeTtl?: number;
  maxEntries?: number;
  now?: () => number;
  /**
   * The address guard: may the gateway serve and dial this address? Default: proxy/address.ts's
   * isReachable (public IPv4 only). Tests in-process inject one that admits their loopback origins.
   */
  guard?: (ip: string) => boolean;
}

type Cached = Exclude<Lookup, { status: 'servfail' | 'revoked' }>;

export class Resolver {
  private readonly cache = new Map<string, { result: Cached; expires: number }>();
  private readonly inflight = new Map<string, Promise<Cached>>();
  private readonly opts: Required<Omit<ResolverOptions, 'onResolved' | 'allowed'>> & Pick<ResolverOptions, 'onResolved' | 'allowed'>;

  constructor(
    readonly upstream: UpstreamResolver,
    opts: ResolverOptions = {},
  ) {
    this.opts = { minTtl: 5, maxTtl: 3600, negativeTtl: 10, maxEntries: 10_000, now: () => Date.now(), guard: isReachable, ...opts };
  }

  /** Resolve an already normalised, already allowed name to the IPv4 addresses the gateway may use. */
  async lookup(name: string): Promise<Lookup> {
    let result: Cached;
    const hit = this.cache.get(name);
    const now = this.opts.now();
    if (hit && hit.expires > now) {
      result = hit.result;
      if (result.status === 'ok' || result.status === 'nodata') {
        result = { ...result, ttl: Math.max(1, Math.ceil((hit.expires - now) / 1000)) };
      }
    } else {
      try {
        result = await this.fetch(name);
      } catch (err) {
        return { status: 'servfail', reason: 'upstream-failed', detail: (err as Error).message };
      }
    }
    if (this.opts.allowed && !this.opts.allowed(name)) return { status: 'revoked' };
    if (result.status === 'ok' && this.opts.onResolved) {
      try {
        await this.opts.onResolved(name, result.ips, result.ttl);
      } catch (err) {
        return { status: 'servfail', reason: 'firewall-failed', detail: (err as Error).message };
      }
    }
    return result;
  }

  /** Drop cached answers for names the predicate selects (e.g. names no longer allowed after a reload). */
  forget(drop: (name: string) => boolean): void {
    for (const name of this.cache.keys()) if (drop(name)) this.cache.delete(name);
  }

  private fetch(name: string): Promise<Cached> {
    let p = this.inflight.get(name);
    if (!p) {
      p = this.fetchUncoalesced(name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private async fetchUncoalesced(name: string): Promise<Cached> {
    const r = await this.upstream.resolveA(name);
    const { minTtl, maxTtl, negativeTtl } = this.opts;
    let result: Cached;
    let ttl: number;
    if (r.rcode === RCODE.NXDOMAIN) {
      result = { status: 'nxdomain' };
      ttl = negativeTtl;
    } else if (!allIPv4(r.ips) || r.ips.some((ip) => !this.opts.guard(ip))) {
      result = { status: 'refused', ips: r.ips };
      ttl = negativeTtl;
    } else {
      ttl = Math.min(maxTtl, Math.max(minTtl, r.ttl));
      result = r.ips.length ? { status: 'ok', ips: r.ips, ttl } : { status: 'nodata', ttl };
    }
    // Kept only for a name still allowed: an answer that lands after a reload removed the name (its
    // entry already forgotten) would otherwise be served, unasked, once the name is allowed again (ATTACK16).
    if (!this.opts.allowed || this.opts.allowed(name)) this.store(name, result, ttl);
    return result;
  }

  private store(name: string, result: Cached, ttlSeconds: number): void {
    if (this.cache.size >= this.opts.maxEntries) {
      // Evict the oldest insertion (Map keeps insertion order): bounded memory under a flood of names.
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.delete(name);
    this.cache.set(name, { result, expires: this.opts.now() + ttlSeconds * 1000 });
  }
}
