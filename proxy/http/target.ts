// Read where a proxy request wants to go: a CONNECT authority or an absolute-form URL. No I/O.
import { normalizeName } from '../policy/names.js';

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
  if (!m || p === undefined || p === null) return { ok: false, detail: `bad CONNECT target ${JSON.stringify(authority.slice(0, 300))}` };
  return { ok: true, host: m[1]!, port: p };
}

/** An absolute-form `http://` URL. Origin-form and other schemes are not proxy requests. */
export function parseAbsoluteUrl(raw: string): Target & { path?: string } {
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

/** Does a Host header name the same host and port as the request target? */
export function hostHeaderMatches(header: string | undefined, host: string, targetPort: number): boolean {
  if (!header) return false;
  const m = /^(\[[^\]]*\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(header.trim());
  if (!m) return false;
  const hp = m[2] === undefined ? 80 : port(m[2]);
  const a = normalizeName(m[1]!);
  const b = normalizeName(host);
  return hp === targetPort && a.ok && b.ok && a.name === b.name;
}
