// Repeated denials, summarised: a flood of refused queries or requests becomes a bounded number of lines
// with exact counts. Pure (a clock and a sink are injected); proxy/audit.ts runs the window timer.
//
// - The first denial of a kind (the same event with the same fields, `ms` and `time` aside) is written in
//   full at once. Identical ones after it are counted, and at the end of each window one `repeat` line says
//   how many there were and when the first and last of them came. A kind seen in no window for a whole
//   window is forgotten (its next occurrence is written in full again).
// - Each client may open at most `perClient` new kinds of each event (dns, connect, http) per window, and
//   all clients together `maxKeys`: beyond that (names made up by the thousand: random labels, case
//   variants) denials are counted in one `suppressed` line per client and event per window, with the first
//   `sample` names they asked for. The budgets are per event, so a DNS flood cannot push the proxy's
//   denials out of the log (nor the other way round).
// So with W the window, a client's denials of one event cost at most 2 × perClient + 1 lines per W (full
// lines, repeats, one suppressed line), whatever their rate. Allowed decisions are never summarised.
import type { AuditEvent } from './audit.js';

export interface SummaryOptions {
  /** Length of a counting window (ms). */
  windowMs: number;
  /** New kinds of denial written in full per client and event per window. */
  perClient: number;
  /** Kinds tracked at once (all clients). */
  maxKeys: number;
  /** Names kept in a `suppressed` line. */
  sample: number;
}

export const SUMMARY_DEFAULTS: SummaryOptions = { windowMs: 10_000, perClient: 100, maxKeys: 20_000, sample: 10 };

type Decided = Extract<AuditEvent, { event: 'dns' | 'connect' | 'http' }>;

/** `count` more events equal to the fields here (the `of` event, `ms` left out) came from `first` to `last`. */
export type RepeatEvent = { event: 'repeat'; of: Decided['event']; count: number; first: string; last: string } & Omit<
  Decided,
  'event' | 'ms'
>;

/** `count` denials from a client beyond its budget of new kinds; `sample` holds the first names. */
export interface SuppressedEvent {
  event: 'suppressed';
  of: Decided['event'];
  client: string;
  decision: 'deny';
  count: number;
  sample: string[];
  first: string;
  last: string;
}

interface Kind {
  fields: Omit<Decided, 'ms'>;
  count: number;
  first: number;
  last: number;
  /** Created in the current window (kept through its first tick even when not repeated). */
  fresh: boolean;
}

interface ClientBudget {
  client: string;
  event: Decided['event'];
  fresh: number;
  over?: { count: number; sample: string[]; first: number; last: number };
}

export const isSummarised = (e: AuditEvent): e is Decided =>
  (e.event === 'dns' || e.event === 'connect' || e.event === 'http') && e.decision === 'deny';

const what = (e: Decided) => (e.event === 'dns' ? e.name : `${e.host}:${e.port}`);
const iso = (ms: number) => new Date(ms).toISOString();

export class Summariser {
  private kinds = new Map<string, Kind>();
  private clients = new Map<string, ClientBudget>();

  constructor(
    private readonly emit: (e: AuditEvent | RepeatEvent | SuppressedEvent) => void,
    private readonly opts: SummaryOptions = SUMMARY_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Write the event, or count it. */
  write(e: AuditEvent): void {
    if (e.event === 'stop') this.flush();
    if (!isSummarised(e)) return this.emit(e);
    const { ms: _ms, ...fields } = e as Decided & { ms?: number };
    const key = JSON.stringify(fields);
    const t = this.now();
    const kind = this.kinds.get(key);
    if (kind) {
      if (kind.count === 0) kind.first = t;
      kind.count++;
      kind.last = t;
      return;
    }
    // The budget table is bounded like the kinds: past maxKeys every further client shares one entry.
    let id = `${e.event} ${e.client}`;
    if (!this.clients.has(id) && this.clients.size >= this.opts.maxKeys) id = `${e.event} *`;
    let budget = this.clients.get(id);
    if (!budget) this.clients.set(id, (budget = { client: id.endsWith(' *') ? '*' : e.client, event: e.event, fresh: 0 }));
    if (budget.fresh >= this.opts.perClient || this.kinds.size >= this.opts.maxKeys) {
      const o = (budget.over ??= { count: 0, sample: [], first: t, last: t });
      o.count++;
      o.last = t;
      const name = what(e);
      if (o.sample.length < this.opts.sample && !o.sample.includes(name)) o.sample.push(name);
      return;
    }
    budget.fresh++;
    this.kinds.set(key, { fields, count: 0, first: t, last: t, fresh: true });
    this.emit(e);
  }

  /** End of a window: one line per repeated kind and per client over budget; forget idle kinds. */
  tick(): void {
    for (const [key, k] of this.kinds) {
      if (k.count > 0) {
        this.emitRepeat(k);
        k.fresh = false;
      } else if (k.fresh) k.fresh = false;
      else this.kinds.delete(key);
    }
    this.flushClients();
  }

  /** Write every pending count now (stop, close). Kinds are forgotten. */
  flush(): void {
    for (const k of this.kinds.values()) if (k.count > 0) this.emitRepeat(k);
    this.kinds.clear();
    this.flushClients();
  }

  /** Kinds tracked (for tests and bounds). */
  get size(): number {
    return this.kinds.size;
  }

  private emitRepeat(k: Kind): void {
    const { event, ...rest } = k.fields;
    this.emit({ event: 'repeat', of: event, ...rest, count: k.count, first: iso(k.first), last: iso(k.last) } as RepeatEvent);
    k.count = 0;
  }

  private flushClients(): void {
    for (const { client, event, over: o } of this.clients.values()) {
      if (o)
        this.emit({
          event: 'suppressed',
          of: event,
          client,
          decision: 'deny',
          count: o.count,
          sample: o.sample,
          first: iso(o.first),
          last: iso(o.last),
        });
    }
    this.clients.clear();
  }
}
