// Read where a proxy request wants to go: a CONNECT authority or an absolute-form URL. No I/O.
import { quoted } from '../quoted.js';

export type Target = { ok: true; host: string; port: number } | { ok: false; detail: string };

const PORT = /^[0-9]{1,5}$/;

function port(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** `host:port` of a CONNECT request (the port is required). IPv6 literals come back as `[..]` hosts. */
export function parseAuthority(authority: string): Target {
  const m = /^(\[[^\]]*\]|[^:[\]]+):([^:]*)$/.exec(authority);
  const p = m && port(m[2]!);
  if (!m || p === undefined || p === null) return { ok: false, detail: `bad CONNECT target ${quoted(authority, 300)}` };
  return { ok: true, host: m[1]!, port: p };
}

export type UrlTarget = { ok: true; host: string; port: number; path: string } | { ok: false; detail: string };

/** An absolute-form `http://` URL. Origin-form and other schemes are not proxy requests. */
export function parseAbsoluteUrl(raw: string): UrlTarget {
  if (!/^http:\/\//i.test(raw)) return { ok: false, detail: 'only absolute-form http:// URLs are proxied (use CONNECT for TLS)' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, detail: 'malformed URL' };
  }
  if (url.username || url.password) return { ok: false, detail: 'credentials in the URL are not allowed' };
  return { ok: true, host: url.hostname, port: url.port ? Number(url.port) : 80, path: `${url.pathname}${url.search}` };
}

/** Letters, digits, dot and hyphen: the only bytes a host name in SNI or a Host header may have. */
const LDH = /^[A-Za-z0-9.-]+$/;

/**
 * Does a name written by the client (SNI, Host header) spell `name` (a normalised rule-side name)?
 * ASCII bytes only, compared case-insensitively, one optional trailing dot; no Unicode mapping, no
 * IDN conversion, no percent-decoding: `allo\xadwed.test` or a full-width letter never equals `allowed.test`.
 */
export function spellsName(written: string, name: string): boolean {
  const h = written.endsWith('.') ? written.slice(0, -1) : written;
  return h.length > 0 && LDH.test(h) && h.toLowerCase() === name;
}

/**
 * Does a Host header name `name` on `targetPort`? `host[:port]`; a missing port means 80, or, with
 * `portOptional` (plain HTTP inside a tunnel, which is already bound to its port), any.
 */
export function hostHeaderMatches(header: string | undefined, name: string, targetPort: number, portOptional = false): boolean {
  if (header === undefined) return false;
  const m = /^([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?$/.exec(header);
  if (!m) return false;
  const hp = m[2] === undefined ? (portOptional ? targetPort : 80) : port(m[2]);
  return hp === targetPort && spellsName(m[1]!, name);
}
