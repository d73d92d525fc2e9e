// The header rewrite of an intercepted request: the sentinel in the credential's header becomes the real
// value; anything else is forwarded unchanged or refused (the credential's `foreign` mode). Pure.
import { headerValue, SENTINEL, type Credential } from './credentials.js';

/** What an intercepted request carried in the credential's header (its audit line's `credential`). */
export type CredentialUse = 'injected' | 'foreign' | 'absent';

export type Rewrite =
  | { ok: true; headers: string[]; use: CredentialUse }
  | { ok: false; use: CredentialUse | 'duplicate'; status: number; reason: 'bad-request' | 'foreign-credential'; detail: string };

/** Does a written header value say exactly the sentinel in the credential's format? (scheme in any case) */
function isSentinel(written: string, format: string): boolean {
  const expected = headerValue(format, SENTINEL);
  const v = written.trim();
  const sp = expected.indexOf(' ');
  if (sp < 0) return v === expected;
  // "Bearer x" / "bearer x": the scheme is case-insensitive (RFC 9110 11.1), the rest exact
  return (
    v.length === expected.length &&
    v.slice(0, sp).toLowerCase() === expected.slice(0, sp).toLowerCase() &&
    v.slice(sp) === expected.slice(sp)
  );
}

/**
 * Rewrite the header list (name, value, …) of a request to the credential's host. More than one header
 * of that name (in any spelling) is refused: which one an origin reads is not ours to guess, and the
 * sentinel must never go through unreplaced next to the real value.
 */
export function rewriteCredential(headers: readonly string[], c: Credential): Rewrite {
  // `X_Api_Key` is X-Api-Key to an origin that maps `_` to `-` (CGI/WSGI-style, as framing.ts says)
  const spelling = (name: string) => name.toLowerCase().replaceAll('_', '-');
  const at: number[] = [];
  for (let i = 0; i < headers.length; i += 2) if (spelling(headers[i]!) === spelling(c.header)) at.push(i);
  if (at.length > 1) return { ok: false, use: 'duplicate', status: 400, reason: 'bad-request', detail: `more than one ${c.header} header` };
  if (at.length === 0) return { ok: true, headers: [...headers], use: 'absent' };
  const i = at[0]!;
  if (isSentinel(headers[i + 1]!, c.format)) {
    const out = [...headers];
    out[i + 1] = headerValue(c.format, c.value);
    return { ok: true, headers: out, use: 'injected' };
  }
  if (c.foreign === 'refuse') {
    return {
      ok: false,
      use: 'foreign',
      status: 403,
      reason: 'foreign-credential',
      detail: `the ${c.header} header is not the sentinel of credential ${c.name}`,
    };
  }
  return { ok: true, headers: [...headers], use: 'foreign' };
}
