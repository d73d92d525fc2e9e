// Admission: decide a host and port, register the connection, resolve the name, and re-check the
// decision after the lookup against the policy in force then (a reload may have happened meanwhile).
import type { Allowlist, Decision } from '../policy/allowlist.js';
import { DENY_STATUS, type DenyReason } from '../reasons.js';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { revokedDetail, stillAllowed, type Connection, type Registry } from './registry.js';

export type Refusal = { status: number; reason: DenyReason; detail?: string };

export type Admission =
  | { ok: true; decision: Extract<Decision, { allow: true }>; ip: string; conn: Connection; done: () => void }
  | ({ ok: false; decision: Decision } & Refusal);

const lookupRefusal = (r: Exclude<Lookup, { status: 'ok' | 'revoked' }>): Refusal =>
  r.status === 'refused'
    ? {
        reason: 'private-address',
        status: DENY_STATUS['private-address'],
        detail: `resolves to a non-public address (${r.ips.join(', ')})`,
      }
    : {
        reason: 'resolve-failed',
        status: DENY_STATUS['resolve-failed'],
        detail: r.status === 'servfail' ? r.detail : `name has no IPv4 address (${r.status})`,
      };

/** A connection revoked (by a reload or the gateway stopping) before it was answered. */
export const revokedRefusal = (c: Connection): Refusal => {
  const reason = c.revoked ?? 'policy-reload';
  return { status: DENY_STATUS[reason], reason, detail: revokedDetail(c) };
};

export interface AdmitDeps {
  allowlist: () => Allowlist;
  resolver: Resolver;
  registry: Registry;
}

export async function admit(
  deps: AdmitDeps,
  kind: Connection['kind'],
  via: Connection['via'],
  client: string,
  rawHost: string,
  port: number,
): Promise<Admission> {
  const decision = deps.allowlist().decide(rawHost, via, port);
  if (!decision.allow) return { ok: false, decision, status: DENY_STATUS[decision.reason], reason: decision.reason };
  const { conn, done } = deps.registry.add({
    kind,
    client,
    host: decision.host,
    port,
    via,
    ...(kind === 'tunnel' ? { carries: decision.carries } : {}),
  });
  const r = await deps.resolver.lookup(decision.host);
  const fail = (x: Refusal): Admission => {
    done();
    return { ok: false, decision, ...x };
  };
  if (r.status === 'revoked' || !stillAllowed(conn, deps.allowlist)) return fail(revokedRefusal(conn));
  if (r.status !== 'ok') return fail(lookupRefusal(r));
  const ip = r.ips[0];
  if (ip === undefined)
    return fail({ reason: 'resolve-failed', status: DENY_STATUS['resolve-failed'], detail: 'the lookup returned no address' });
  return { ok: true, decision, ip, conn, done };
}
