// Every connection the proxy holds for a host — CONNECT tunnels, WebSockets, plain-HTTP requests in
// flight — registered from the moment its host is admitted (before the name is resolved or dialled),
// so that a reload can close those the new allowlist no longer allows, whatever stage they are at.
import type { Allowlist, Via } from '../policy/allowlist.js';
import type { RevokeReason } from '../reasons.js';
import { LiveList } from '../live-list.js';

export type CloseReason = RevokeReason;

export interface Connection {
  kind: 'tunnel' | 'websocket' | 'request';
  client: string;
  /** The normalised host and the port it was admitted for, and how (CONNECT or plain HTTP). */
  host: string;
  port: number;
  via: Exclude<Via, 'dns'>;
  /** Set once the connection has been revoked; every stage checks it after each await. */
  revoked?: CloseReason;
  /** Close it now, at whatever stage it is (set by the stage that holds sockets). */
  onClose?: (reason: CloseReason) => void;
  /** Settles when its sockets are closed and its last audit line is written. */
  closed: Promise<void>;
}

export class Registry {
  // A LiveList, not a Set: a Set's dropped tables kept every connection alive through young-generation GCs (live-list.ts).
  private readonly open = new LiveList<Connection>();

  /** Register a connection; the returned function removes it (call once it is closed). */
  add(c: Connection): () => void {
    return this.open.add(c);
  }

  get size(): number {
    return this.open.size;
  }

  all(): Connection[] {
    return this.open.values();
  }

  close(c: Connection, reason: CloseReason): void {
    if (c.revoked) return;
    c.revoked = reason;
    c.onClose?.(reason);
  }

  /** Close every connection `allowlist` no longer allows; returns them. */
  revoke(allowlist: Allowlist): Connection[] {
    const gone = this.all().filter((c) => !c.revoked && !allowlist.decide(c.host, c.via, c.port).allow);
    for (const c of gone) this.close(c, 'policy-reload');
    return gone;
  }
}

/** Is a connection admitted earlier still allowed now? Checked after every await (lookup, connect). */
export function stillAllowed(c: Connection, current: () => Allowlist): boolean {
  return !c.revoked && current().decide(c.host, c.via, c.port).allow;
}

export const revokedDetail = (c: Connection): string =>
  c.revoked === 'shutdown' ? 'the gateway is stopping' : 'the allowlist changed: this host is no longer allowed';
