// Every connection the proxy holds for a host — CONNECT tunnels, WebSockets, plain-HTTP requests in
// flight — registered from the moment its host is admitted (before the name is resolved or dialled),
// so that a reload can close those the new allowlist no longer allows, whatever stage they are at.
import { CARRIES_RANK, type Allowlist, type Carries, type Via } from '../policy/allowlist.js';
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
  /** A tunnel: what its rule let it carry when it was admitted (its first bytes were or will be checked against it). */
  carries?: Carries;
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

  /**
   * Register a connection from the moment it is admitted; `done` removes it and settles its `closed`
   * (call once its sockets are closed and its last audit line written; again does nothing).
   */
  add(c: Omit<Connection, 'closed'>): { conn: Connection; done: () => void } {
    let settle!: () => void;
    const conn: Connection = { ...c, closed: new Promise<void>((resolve) => (settle = resolve)) };
    const remove = this.open.add(conn);
    return {
      conn,
      done: () => {
        remove();
        settle();
      },
    };
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
    const gone = this.all().filter((c) => !c.revoked && !allows(allowlist, c));
    for (const c of gone) this.close(c, 'policy-reload');
    return gone;
  }
}

/** Is a connection admitted earlier still allowed now? Checked after every await (lookup, connect). */
export function stillAllowed(c: Connection, current: () => Allowlist): boolean {
  return !c.revoked && allows(current(), c);
}

/**
 * Does `allowlist` allow the connection as it was admitted: its host and port, and for a tunnel at
 * least what it was let carry (a `/tcp` rule narrowed to a port rule, or a port rule to a host-only
 * rule, closes the tunnels it opened: what they carry was checked against the wider rule, or not at all).
 */
function allows(allowlist: Allowlist, c: Connection): boolean {
  const d = allowlist.decide(c.host, c.via, c.port);
  return d.allow && (c.carries === undefined || CARRIES_RANK[d.carries] >= CARRIES_RANK[c.carries]);
}

export const revokedDetail = (c: Connection): string =>
  c.revoked === 'shutdown'
    ? 'the gateway is stopping'
    : 'the allowlist changed: this host (or what the tunnel carries) is no longer allowed';
