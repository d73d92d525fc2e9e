// HTTP/1.1 message framing, checked before anything is forwarded. No I/O.
//
// The request the origin receives must be framed exactly as the one the proxy checked: a proxy and an
// origin that disagree on where a request ends let a second, unchecked request through (smuggling).
// So a request whose framing could be read two ways is refused, the framing headers are forwarded as
// they came, and nothing the client lists in `Connection` may remove a framing or identity header.

/** Raw header list as Node gives it: name, value, name, value, ... */
export type RawHeaders = readonly string[];

/** Headers that decide where a message ends or where it goes: `Connection` may never name them. */
const PROTECTED = new Set(['content-length', 'transfer-encoding', 'host']);

/** Hop-by-hop headers of the client's request, never forwarded (RFC 9110 7.6.1, plus proxy credentials). */
const REQUEST_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

/** Hop-by-hop headers of an origin's response (its framing is re-done by the proxy, except Content-Length). */
const RESPONSE_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Methods Node's client would give a chunked body by default when the request names no framing. */
const BODYLESS_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CONTENT_LENGTH = /^[0-9]{1,15}$/;

export type Framing = 'none' | 'length' | 'chunked';

export type RequestHead = { ok: true; headers: string[]; framing: Framing } | { ok: false; detail: string };

/** Does a `Connection` (or `Proxy-Connection`) value list `close`, in any case? */
export function listsClose(value: string): boolean {
  return value.split(',').some((t) => t.trim().toLowerCase() === 'close');
}

/**
 * Does the client ask for its connection to close after this request: `close` listed in `Connection`
 * or `Proxy-Connection` (which Node's parser honours too), in any case, with any whitespace around it?
 * Every path reads it this way (plain.ts, and http-server.ts where node:http's parser reads less).
 */
export function wantsClose(raw: RawHeaders): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if ((name === 'connection' || name === 'proxy-connection') && listsClose(raw[i + 1]!)) return true;
  }
  return false;
}

function connectionTokens(raw: RawHeaders): string[] {
  const tokens: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const t of raw[i + 1]!.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok) tokens.push(tok);
    }
  }
  return tokens;
}

/**
 * Check a request head and build the header list for the origin.
 * - exactly one Host; at most one Content-Length, digits only; at most one Transfer-Encoding, exactly
 *   `chunked`, HTTP/1.1 only; never both;
 * - `Connection` must not name Content-Length, Transfer-Encoding or Host (any spelling);
 * - hop-by-hop headers and those `Connection` names are removed; for a WebSocket upgrade `Upgrade` is
 *   kept and `Connection: Upgrade` set, and the request may carry no body;
 * - a request with no framing header goes out with none, or `Content-Length: 0` for a method Node would
 *   otherwise chunk (the same empty body either way).
 */
export function checkRequestHead(method: string, httpVersion: string, raw: RawHeaders, upgrade: boolean): RequestHead {
  const bad = (detail: string): RequestHead => ({ ok: false, detail });
  let hosts = 0;
  const lengths: string[] = [];
  const encodings: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!TOKEN.test(raw[i]!) || !FIELD_VALUE.test(raw[i + 1]!)) return bad('malformed header');
    // `Transfer_Encoding` is a different header to Node, but the real one to origins that map `_`
    // to `-` (CGI/WSGI-style environments): a second, unchecked framing.
    if (name.includes('_') && PROTECTED.has(name.replaceAll('_', '-')))
      return bad(`header ${raw[i]} spells a framing or identity header with "_"`);
    if (name === 'host') hosts++;
    else if (name === 'content-length') lengths.push(raw[i + 1]!.trim());
    else if (name === 'transfer-encoding') encodings.push(raw[i + 1]!.trim());
  }
  if (hosts !== 1) return bad('exactly one Host header is required');
  if (lengths.length > 1) return bad('more than one Content-Length header');
  if (lengths.length === 1 && !CONTENT_LENGTH.test(lengths[0]!)) return bad('Content-Length must be a number');
  if (encodings.length > 1) return bad('more than one Transfer-Encoding header');
  if (encodings.length === 1 && encodings[0]!.toLowerCase() !== 'chunked') return bad('Transfer-Encoding other than chunked');
  if (encodings.length === 1 && httpVersion !== '1.1') return bad('Transfer-Encoding in an HTTP/1.0 request');
  if (encodings.length && lengths.length) return bad('both Content-Length and Transfer-Encoding');
  const listed = connectionTokens(raw);
  const named = listed.find((t) => PROTECTED.has(t));
  if (named) return bad(`Connection names ${named}, a framing or identity header`);
  const framing: Framing = encodings.length ? 'chunked' : lengths.length ? 'length' : 'none';
  if (upgrade && (encodings.length || (lengths.length && Number(lengths[0]) !== 0))) return bad('an upgrade request cannot carry a body');

  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if ((REQUEST_HOP.has(name) || listed.includes(name)) && !(upgrade && name === 'upgrade')) continue;
    if (name.startsWith('proxy-')) continue;
    headers.push(raw[i]!, raw[i + 1]!);
  }
  if (upgrade) headers.push('Connection', 'Upgrade');
  if (framing === 'none' && !BODYLESS_BY_DEFAULT.has(method)) headers.push('Content-Length', '0');
  return { ok: true, headers, framing };
}

export type ResponseHead = { ok: true; headers: string[] } | { ok: false; detail: string };

/**
 * Check an origin's response head before any of it reaches the client: a status of 100–599 (200–599
 * for a final answer, 101 only for an upgrade), a reason phrase of visible ASCII, header names that are
 * tokens and values without control bytes. Returns the headers to send on, hop-by-hop ones removed.
 */
export function checkResponseHead(status: number | undefined, reason: string | undefined, raw: RawHeaders, upgrade: boolean): ResponseHead {
  const bad = (detail: string): ResponseHead => ({ ok: false, detail });
  if (status === undefined || !Number.isInteger(status) || status < 100 || status > 599) return bad(`upstream status ${String(status)}`);
  if (upgrade ? status !== 101 && status < 200 : status < 200) return bad(`upstream status ${status} where a final answer was due`);
  if (!upgrade && status === 101) return bad('upstream switched protocols unasked');
  if (!/^[\t\x20-\x7e]*$/.test(reason ?? '')) return bad('control bytes in the upstream reason phrase');
  const listed = new Set(connectionTokens(raw));
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) return bad('malformed upstream header');
    const lower = name.toLowerCase();
    const keepForUpgrade = upgrade && status === 101 && (lower === 'upgrade' || lower === 'connection');
    if (!keepForUpgrade && (RESPONSE_HOP.has(lower) || (listed.has(lower) && lower !== 'content-length'))) continue;
    headers.push(name, value);
  }
  return { ok: true, headers };
}
