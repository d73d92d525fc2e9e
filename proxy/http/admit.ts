// Admission: decide a host and port, register the connection, resolve the name, and re-check the
// decision after the lookup against the policy in force then (a reload may have happened meanwhile).
import type { Allowlist, Decision, DenyReason } from '../policy/allowlist.js';
import type { Lookup, Resolver } from '../dns/resolver.js';
import { revokedDetail, stillAllowed, type Connection, type Registry } from './registry.js';

export type Refusal = { status: number; reason: DenyReason; detail?: string };

export type Admission =
  | { ok: true; decision: Decision & { allow: true; host: string }; ip: string; conn: Connection; done: () => void }
  | ({ ok: false; decision: Decision } & Refusal);

const lookupRefusal = (r: Exclude<Lookup, { status: 'ok' | 'revoked' }>): Refusal =>
  r.status === 'refused'
    ? { reason: 'private-address', status: 403, detail: `resolves to a non-public address (${r.ips.join(', ')})` }
    : { reason: 'resolve-failed', status: 502, detail: r.status === 'servfail' ? r.detail : `name has no IPv4 address (${r.status})` };

export const revokedRefusal = (c: Connection): Refusal => ({ status: 403, reason: 'policy-reload', detail: revokedDetail(c) });

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
  if (!decision.allow || !decision.host) return { ok: false, decision, status: 403, reason: decision.reason as DenyReason };
  let settle!: () => void;
  const closed = new Promise<void>((resolve) => (settle = resolve));
  const conn: Connection = { kind, client, host: decision.host, port, via, closed };
  const remove = deps.registry.add(conn);
  const done = () => {
    remove();
    settle();
  };
  const r = await deps.resolver.lookup(decision.host);
  const fail = (x: Refusal): Admission => {
    done();
    return { ok: false, decision, ...x };
  };
  if (r.status === 'revoked' || !stillAllowed(conn, deps.allowlist)) return fail(revokedRefusal(conn));
  if (r.status !== 'ok') return fail(lookupRefusal(r));
  return { ok: true, decision: decision as Decision & { allow: true; host: string }, ip: r.ips[0]!, conn, done };
}
