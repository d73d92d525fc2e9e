// The DNS → ipset bridge: every served A record goes into the allow set before the answer leaves.
// Adds are batched (one `ipset restore` for all the answers waiting at that moment), the set is bounded
// (full → the add fails, so the answer is refused: never fail open), and the names behind each address
// are remembered so that a reload can flush the addresses of names no longer allowed.
import { renderAdds, renderDels } from './rules.js';
import { execDirect, type Exec } from './apply.js';

export class SetFullError extends Error {
  readonly code = 'ERR_SET_FULL';
}

export interface AllowSetOptions {
  /** Maximum number of addresses (the set's maxelem). */
  size: number;
  /** Entry lifetime bounds in seconds: the DNS TTL is clamped into [minTtl, maxTtl]. */
  minTtl: number;
  maxTtl: number;
  exec?: Exec;
  now?: () => number;
}

interface Entry {
  expires: number;
  names: Set<string>;
  /** Settles when the kernel has the entry (the batch that added or refreshed it). */
  ready: Promise<void>;
}

export class AllowSet {
  private readonly entries = new Map<string, Entry>();
  private readonly exec: Exec;
  private readonly now: () => number;
  /** Kernel operations run one at a time, in order. */
  private tail: Promise<unknown> = Promise.resolve();
  /** The batch still open to new addresses (it has not started running). */
  private open?: { adds: Map<string, number>; done: Promise<void> };
  /** Number of `ipset restore` runs that added addresses (for tests and /healthz). */
  batches = 0;

  constructor(private readonly opts: AllowSetOptions) {
    this.exec = opts.exec ?? execDirect;
    this.now = opts.now ?? Date.now;
  }

  /** The entry lifetime for a DNS TTL. */
  timeoutFor(ttl: number): number {
    return Math.min(this.opts.maxTtl, Math.max(this.opts.minTtl, Math.ceil(ttl)));
  }

  /** Live addresses, as far as this process knows. */
  get size(): number {
    this.prune();
    return this.entries.size;
  }

  /**
   * Put the addresses of a served answer in the set; resolves once the kernel has them. Throws
   * SetFullError when they do not fit (the caller refuses the answer), or the ipset error.
   */
  async add(name: string, ips: readonly string[], ttl: number): Promise<void> {
    this.prune();
    const now = this.now();
    const timeout = this.timeoutFor(ttl);
    const fresh = ips.filter((ip) => !this.entries.has(ip));
    if (this.entries.size + fresh.length > this.opts.size) {
      throw new SetFullError(`the allow set is full (${this.entries.size} of ${this.opts.size} addresses): ${name} refused`);
    }
    const toKernel = ips.filter((ip) => {
      const e = this.entries.get(ip);
      // A kernel call only when the address is new or its entry would expire soon: a connection made
      // right after this answer must still find it.
      return !e || e.expires - now < (timeout * 1000) / 2;
    });
    const batch = toKernel.length ? this.batch(toKernel, timeout) : undefined;
    const waits: Array<Promise<void>> = [];
    for (const ip of ips) {
      const e = this.entries.get(ip);
      const expires = Math.max(e?.expires ?? 0, now + timeout * 1000);
      // An address another answer is still adding is not in the kernel yet: wait for that batch too.
      const ready = batch && toKernel.includes(ip) ? batch : (e?.ready ?? Promise.resolve());
      waits.push(ready);
      this.entries.set(ip, { expires, names: (e?.names ?? new Set()).add(name), ready });
    }
    try {
      await Promise.all(waits);
    } catch (err) {
      // Not known to be in the kernel: forget them, so that the next answer adds them again.
      for (const ip of ips) if (fresh.includes(ip) || toKernel.includes(ip)) this.entries.delete(ip);
      throw err;
    }
  }

  /** Remove every address only `drop`ped names led to; returns those addresses. */
  async forget(drop: (name: string) => boolean): Promise<string[]> {
    this.prune();
    const gone: string[] = [];
    for (const [ip, e] of this.entries) {
      for (const name of e.names) if (drop(name)) e.names.delete(name);
      if (e.names.size === 0) {
        this.entries.delete(ip);
        gone.push(ip);
      }
    }
    if (gone.length) await this.serial(() => this.exec('ipset', ['restore'], renderDels(gone)));
    return gone;
  }

  /** The names behind each live address (for tests and diagnostics). */
  snapshot(): Record<string, string[]> {
    this.prune();
    return Object.fromEntries([...this.entries].map(([ip, e]) => [ip, [...e.names].sort()]));
  }

  private batch(ips: string[], timeout: number): Promise<void> {
    if (!this.open) {
      const adds = new Map<string, number>();
      const done = this.serial(async () => {
        this.open = undefined;
        this.batches++;
        await this.exec('ipset', ['restore'], renderAdds([...adds].map(([ip, t]) => ({ ip, timeout: t }))));
      });
      this.open = { adds, done };
    }
    for (const ip of ips) this.open.adds.set(ip, Math.max(this.open.adds.get(ip) ?? 0, timeout));
    return this.open.done;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.tail.then(op, op);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private prune(): void {
    const now = this.now();
    for (const [ip, e] of this.entries) if (e.expires <= now) this.entries.delete(ip);
  }
}
