// The one closed list of why the gateway refused, failed or closed something, and the reply each maps
// to. Every audit line's `reason` and `closed_by`, and every `x-codex-egress-deny` header value, is one
// of these. No I/O.

/** Why decide() refuses a name (policy/allowlist.ts): the input or the rules, nothing else. */
export const POLICY_DENY_REASONS = ['not-allowlisted', 'denied-by-rule', 'port-not-allowed', 'ip-literal', 'invalid-host'] as const;
export type PolicyDenyReason = (typeof POLICY_DENY_REASONS)[number];

/**
 * Why a request, tunnel or query was refused (decision `deny`): the policy's reasons, then the checks
 * after it. `policy-reload` is not a decision of the policy: it is a request admitted under the old
 * allowlist that a reload revoked before it was answered (or a tunnel the reload closed).
 */
export const DENY_REASONS = [
  ...POLICY_DENY_REASONS,
  'private-address',
  'resolve-failed',
  'sni-mismatch',
  'tls-required',
  'protocol-not-allowed',
  'host-mismatch',
  'bad-request',
  'policy-reload',
  'shutdown',
  'connection-limit',
  'foreign-credential',
] as const;
export type DenyReason = (typeof DENY_REASONS)[number];

/** Why an allowed request or query failed (decision `error`, or a DNS SERVFAIL / NXDOMAIN outcome). */
export const ERROR_REASONS = [
  'upstream-connect-failed',
  'upstream-error',
  'upstream-failed',
  'firewall-failed',
  'nxdomain',
  'pool-exhausted',
] as const;
export type ErrorReason = (typeof ERROR_REASONS)[number];

/** An audit line's `reason`. */
export type Reason = 'allowed' | DenyReason | ErrorReason;

/** Who or what ended a tunnel or WebSocket (`tunnel_close.closed_by`). */
export const CLOSED_BY = [
  'client',
  'upstream',
  'idle-timeout',
  'policy-reload',
  'shutdown',
  'sni-mismatch',
  'tls-required',
  'protocol-not-allowed',
  // a plain-HTTP tunnel closed after the gateway refused a request in it (or answered one with an error)
  'request-refused',
  'error',
] as const;
export type ClosedBy = (typeof CLOSED_BY)[number];

/** Why the gateway itself closes connections it had admitted. */
export type RevokeReason = Extract<ClosedBy, 'policy-reload' | 'shutdown'>;

/** The HTTP status the proxy answers a refusal before any byte was relayed with. */
export const DENY_STATUS: Readonly<Record<DenyReason, number>> = {
  'not-allowlisted': 403,
  'denied-by-rule': 403,
  'port-not-allowed': 403,
  'ip-literal': 403,
  'invalid-host': 403,
  'private-address': 403,
  'resolve-failed': 502,
  // The three first-bytes reasons close a tunnel after its 200: no reply is written for them.
  'sni-mismatch': 403,
  'tls-required': 403,
  'protocol-not-allowed': 403,
  'host-mismatch': 403,
  'bad-request': 400,
  'policy-reload': 403,
  shutdown: 503,
  // A client over its concurrent-connection limit (--max-connections): answered with Retry-After.
  'connection-limit': 429,
  // a request to an injected host carrying another credential than the sentinel (its `foreign: refuse`)
  'foreign-credential': 403,
};

/** The statuses an error is answered with: 502 (bad or failed upstream) and 504 (no answer in time). */
export const ERROR_STATUS = { failed: 502, timeout: 504 } as const;

export const isDenyReason = (s: string): s is DenyReason => (DENY_REASONS as readonly string[]).includes(s);
