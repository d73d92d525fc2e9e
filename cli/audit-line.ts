// An audit line as the CLI reads it back: the events proxy/audit.ts writes (and the summaries of
// proxy/audit-summary.ts), with every field optional and unknown fields kept, so an older line, a newer
// one or a damaged one still reads. A field whose JSON type is not the one the event type gives it is
// dropped when the line is parsed: after parseLine, a field present has its declared type. Pure.
import type { AuditEvent } from '../proxy/audit.js';
import type { RepeatEvent, SuppressedEvent } from '../proxy/audit-summary.js';

/** What pino adds to each event (proxy/audit.ts). */
interface Header {
  v: number;
  time: string;
  level: string;
}
type Written = (AuditEvent | RepeatEvent | SuppressedEvent) & Header;
type Keys = Written extends infer W ? (W extends unknown ? keyof W : never) : never;
type FieldOf<K extends PropertyKey> = Written extends infer W ? (W extends unknown ? (K extends keyof W ? W[K] : never) : never) : never;

/** A line read back: any field of any event, each optional; unknown fields kept as `unknown`. */
export type AuditLine = { [K in Keys]?: FieldOf<K> } & { [k: string]: unknown };

type Kind = 'string' | 'number' | 'boolean' | 'array' | 'object';
type KindOf<T> = T extends string
  ? 'string'
  : T extends number
    ? 'number'
    : T extends boolean
      ? 'boolean'
      : T extends readonly unknown[]
        ? 'array'
        : T extends object
          ? 'object'
          : never;

/**
 * The JSON type of every field the gateway writes. The compiler holds it to the event types: a field
 * missing here, or a kind that is not its type's, fails the build (`Complete` below).
 */
const KINDS = {
  v: ['number'],
  time: ['string'],
  level: ['string'],
  event: ['string'],
  client: ['string'],
  name: ['string'],
  qtype: ['string'],
  decision: ['string'],
  reason: ['string'],
  rcode: ['string'],
  answers: ['array'],
  resolved: ['array'],
  rule: ['object', 'string'],
  ms: ['number'],
  host: ['string'],
  port: ['number'],
  ip: ['string'],
  method: ['string'],
  status: ['number'],
  detail: ['string'],
  mode: ['string'],
  intercepted: ['boolean'],
  credential: ['string'],
  credential_name: ['string'],
  bytes_up: ['number'],
  bytes_down: ['number'],
  closed_by: ['string'],
  ok: ['boolean'],
  rules: ['number'],
  added: ['array'],
  removed: ['array'],
  errors: ['array'],
  closed_tunnels: ['number'],
  released: ['array'],
  dns: ['string'],
  proxy: ['string'],
  firewall: ['boolean'],
  upstreams: ['array'],
  transparent: ['string'],
  signal: ['string'],
  forced: ['boolean'],
  action: ['string'],
  interface: ['string'],
  ports: ['array'],
  set: ['string'],
  set_size: ['number'],
  ipv6_sysctl: ['boolean'],
  family: ['string'],
  chain: ['string'],
  target: ['string'],
  packets: ['number'],
  bytes: ['number'],
  total_packets: ['number'],
  ips: ['array'],
  flushed: ['array'],
  rules_kept: ['boolean'],
  of: ['string'],
  count: ['number'],
  first: ['string'],
  last: ['string'],
  sample: ['array'],
} as const satisfies { [K in Keys]: readonly KindOf<FieldOf<K>>[] };
/** Every kind a field can have is listed (never when complete; otherwise the build fails on `complete`). */
type Missing = { [K in Keys]: Exclude<KindOf<FieldOf<K>>, (typeof KINDS)[K][number]> }[Keys];
export const complete: [Missing] extends [never] ? true : Missing = true;

const kindOf = (x: unknown): Kind | 'null' => (x === null ? 'null' : Array.isArray(x) ? 'array' : (typeof x as Kind));

/** One line of the log, or undefined when it is not a JSON object (a damaged or foreign line). */
export function parseLine(line: string): AuditLine | undefined {
  if (!line.startsWith('{')) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (kindOf(raw) !== 'object') return undefined;
  const e = raw as Record<string, unknown>;
  for (const [k, x] of Object.entries(e)) {
    const kinds: readonly Kind[] | undefined = Object.hasOwn(KINDS, k) ? KINDS[k as Keys] : undefined;
    if (kinds && !kinds.includes(kindOf(x) as Kind)) delete e[k];
  }
  return e as AuditLine;
}
