// The DNS → ipset bridge: every served A record goes into the allow set before the answer leaves.
//
// The promise: once add() resolves, the kernel holds each address at least until now + timeoutFor(ttl),
// whatever was sent before. The gateway's view cannot drift from the kernel's because every entry
// records what the kernel was told (`confirmed`: a lower bound of the kernel's expiry, from the time
// the batch was scheduled, which is before the kernel ran it) and an answer that promises more than
// that always goes to the kernel again. To keep that from costing a kernel call per answer (a 5 s TTL
// is clamped up to the 60 s floor, so every cached answer promises a little more), an address is sent
// with HEADROOM × its lifetime (capped at maxTtl): the next refresh is then due after half the lifetime.
//
// Adds are batched (one `ipset restore` for all the answers waiting at that moment), the set is bounded
// (full → the add fails, so the answer is refused: never fail open), and the names behind each address
// are remembered (bounded per address) so that a reload can flush the addresses of names no longer
// allowed. An entry is kept for as long as the kernel may hold the address, so a reload can always
// find and delete it.
import { renderAdds, renderDels } from './rules.js';
import { execDirect, type Exec } from './apply.js';

export class SetFullError extends Error {
  override readonly name = 'SetFullError';
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

/** The kernel is told this many times the promised lifetime (see the top of the file). */
export const HEADROOM = 1.5;
/**
 * Names remembered per address. Past it the name whose promise ends first is forgotten: a reload that
 * removes the remembered names then deletes the address although a forgotten name still led to it —
 * stricter, never looser (the proxy's next lookup of that name adds it again).
 */
export const MAX_NAMES_PER_ADDRESS = 16;

interface Entry {
  /** The kernel holds the address at least until then (ms; 0 = not known to be there). */
  confirmed: number;
  /** The highest expiry asked of the kernel, confirmed or still in a batch (>= confirmed). */
  target: number;
  /** Settles when the batch that asked for `target` has run. */
  ready: Promise<void>;
  /** The names that led to the address, with the time their promise ends (ms). */
  names: Map<string, number>;
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

  /** The promised entry lifetime for a DNS TTL, in seconds. */
  timeoutFor(ttl: number): number {
    return Math.min(this.opts.maxTtl, Math.max(this.opts.minTtl, Math.ceil(ttl)));
  }

  /** Addresses the kernel may hold (as far as this process knows: it sent all of them). */
  get size(): number {
    this.prune();
    return this.entries.size;
  }

  /**
   * Put the addresses of a served answer in the set; resolves once the kernel holds each of them for at
   * least timeoutFor(ttl) seconds from now. Throws SetFullError when they do not fit (the caller
   * refuses the answer), or the ipset error.
   */
  async add(name: string, ips: readonly string[], ttl: number): Promise<void> {
    this.prune();
    const now = this.now();
    const timeout = this.timeoutFor(ttl);
    const need = now + timeout * 1000;
    const fresh = ips.filter((ip) => !this.entries.has(ip));
    if (this.entries.size + new Set(fresh).size > this.opts.size) {
      throw new SetFullError(`the allow set is full (${this.entries.size} of ${this.opts.size} addresses): ${name} refused`);
    }
    const send = Math.min(this.opts.maxTtl, Math.ceil(timeout * HEADROOM));
    const waits: Array<Promise<void>> = [];
    for (const ip of new Set(ips)) {
      let e = this.entries.get(ip);
      if (!e) {
        e = { confirmed: 0, target: 0, ready: Promise.resolve(), names: new Map() };
        this.entries.set(ip, e);
      }
      remember(e.names, name, need, now);
      if (e.confirmed >= need) continue;
      if (e.target < need) {
        const entry = e;
        const expiry = now + send * 1000;
        const done = this.batch(ip, send);
        const ready = done.then(
          () => {
            entry.confirmed = Math.max(entry.confirmed, expiry);
          },
          (err: unknown) => {
            // Not known to be in the kernel beyond what was confirmed before: the next answer sends it again.
            // (prune() drops the entry if nothing confirmed is left.)
            if (entry.ready === ready) {
              entry.target = entry.confirmed;
              entry.ready = Promise.resolve();
            }
            throw err;
          },
        );
        ready.catch(() => undefined);
        e.target = expiry;
        e.ready = ready;
      }
      waits.push(e.ready);
    }
    await Promise.all(waits);
  }

  /** Remove every address only `drop`ped names (or none still promised) led to; returns those addresses. */
  async forget(drop: (name: string) => boolean): Promise<string[]> {
    this.prune();
    const now = this.now();
    const gone = new Map<string, Entry>();
    for (const [ip, e] of this.entries) {
      for (const [name, until] of e.names) if (until <= now || drop(name)) e.names.delete(name);
      if (e.names.size === 0) {
        // Out of the map at once: an answer arriving meanwhile adds the address again, after the delete.
        this.entries.delete(ip);
        gone.set(ip, e);
      }
    }
    if (gone.size === 0) return [];
    try {
      await this.serial(() => this.exec('ipset', ['restore'], renderDels([...gone.keys()])));
    } catch (err) {
      // The kernel may still hold them: keep them known (with no names) so the next reload deletes them.
      for (const [ip, e] of gone) if (!this.entries.has(ip)) this.entries.set(ip, e);
      throw err;
    }
    return [...gone.keys()];
  }

  /** The names still promised behind each address (for tests and diagnostics). */
  snapshot(): Record<string, string[]> {
    this.prune();
    const now = this.now();
    return Object.fromEntries(
      [...this.entries].map(([ip, e]) => [
        ip,
        [...e.names]
          .filter(([, until]) => until > now)
          .map(([n]) => n)
          .sort(),
      ]),
    );
  }

  private batch(ip: string, timeout: number): Promise<void> {
    if (!this.open) {
      const adds = new Map<string, number>();
      const done = this.serial(async () => {
        this.open = undefined;
        this.batches++;
        await this.exec('ipset', ['restore'], renderAdds([...adds].map(([a, t]) => ({ ip: a, timeout: t }))));
      });
      this.open = { adds, done };
    }
    this.open.adds.set(ip, Math.max(this.open.adds.get(ip) ?? 0, timeout));
    return this.open.done;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.tail.then(op, op);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Forget entries the kernel cannot hold any more (nothing pending for them). */
  private prune(): void {
    const now = this.now();
    for (const [ip, e] of this.entries) if (e.target <= now) this.entries.delete(ip);
  }
}

/** Record that `name` led to an address until `until`, within MAX_NAMES_PER_ADDRESS. */
function remember(names: Map<string, number>, name: string, until: number, now: number): void {
  if (!names.has(name) && names.size >= MAX_NAMES_PER_ADDRESS) {
    for (const [n, u] of names) if (u <= now) names.delete(n);
    if (names.size >= MAX_NAMES_PER_ADDRESS) {
      let first: string | undefined;
      let firstUntil = Infinity;
      for (const [n, u] of names) if (u < firstUntil) [first, firstUntil] = [n, u];
      if (first !== undefined) names.delete(first);
    }
  }
  names.set(name, Math.max(names.get(name) ?? 0, until));
}
