// The CONNECT fast path's request-head reader: the first bytes of a proxy connection, read without
// http.Server. It recognises one shape only, stricter than Node's parser (llhttp):
//
//   CONNECT SP authority SP HTTP/1.1 CRLF        (or HTTP/1.0)
//   *( token ":" *( VCHAR / SP / HTAB ) CRLF )   (no Content-Length, no Transfer-Encoding)
//   CRLF
//
// where authority is letters, digits and `. - _ : [ ]` (parseAuthority decides the rest). Anything
// else — another method, lowercase, a bare LF, a tab or two spaces in the request line, a control or
// non-ASCII byte, obs-fold, a missing or other version, an absolute URL, the HTTP/2 preface, a head
// over the size limit — is `other`: the connection goes to the http.Server path unchanged, which
// answers it exactly as before (a request, a 400, a 431). The bytes after the head's CRLFCRLF are the
// tunnel's first client bytes, never a second request. Pure: no I/O.

export type HeadRead =
  /** Nothing decided yet: more bytes are needed (the prefix so far could still be a clean CONNECT head). */
  | { kind: 'need-more' }
  /** Not a clean CONNECT head: the http.Server path decides. */
  | { kind: 'other' }
  /** A complete CONNECT head: its target, and the bytes that followed it (the tunnel's first bytes). */
  | { kind: 'connect'; authority: string; rest: Buffer };

const PREFIX = Buffer.from('CONNECT ', 'latin1');
const VERSION_11 = Buffer.from(' HTTP/1.1\r\n', 'latin1');
const VERSION_10 = Buffer.from(' HTTP/1.0\r\n', 'latin1');
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** Bytes an authority may have here: ALPHA DIGIT . - _ : [ ] */
const AUTHORITY = new Uint8Array(256);
/** tchar (RFC 9110): ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~ */
const TCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  const alnum = /^[A-Za-z0-9]$/.test(ch);
  AUTHORITY[c] = alnum || '.-_:[]'.includes(ch) ? 1 : 0;
  TCHAR[c] = alnum || "!#$%&'*+-.^_`|~".includes(ch) ? 1 : 0;
}

/** Does `b` (from `at`) start with `want`, as far as `b` goes? 1: all of it, 0: a prefix so far, -1: no. */
function match(b: Buffer, at: number, want: Buffer): 1 | 0 | -1 {
  const n = Math.min(want.length, b.length - at);
  for (let i = 0; i < n; i++) if (b[at + i] !== want[i]) return -1;
  return n === want.length ? 1 : 0;
}

/** A header name (lowercase ASCII of b[from, to)) that frames a body: such a CONNECT goes to http.Server. */
function framing(b: Buffer, from: number, to: number): boolean {
  const n = to - from;
  if (n !== 14 && n !== 17) return false;
  const name = b.toString('latin1', from, to).toLowerCase();
  return name === 'content-length' || name === 'transfer-encoding';
}

/**
 * Read a proxy connection's first bytes (everything received so far, from the first byte). `maxBytes`
 * bounds the head (request line, headers and the empty line): a longer one is `other` (http.Server
 * then answers 431 or 400 as before).
 */
export function readConnectHead(b: Buffer, maxBytes: number): HeadRead {
  const more = (): HeadRead => (b.length >= maxBytes ? { kind: 'other' } : { kind: 'need-more' });
  const p = match(b, 0, PREFIX);
  if (p < 0) return { kind: 'other' };
  if (p === 0) return more();
  // authority
  let i = PREFIX.length;
  const start = i;
  while (i < b.length && AUTHORITY[b[i]!]) i++;
  if (i === b.length) return more();
  if (i === start || b[i] !== SP) return { kind: 'other' };
  const authorityEnd = i;
  const v11 = match(b, i, VERSION_11);
  const v10 = match(b, i, VERSION_10);
  if (v11 < 0 && v10 < 0) return { kind: 'other' };
  if (v11 !== 1 && v10 !== 1) return more();
  i += VERSION_11.length;
  // header lines, then the empty line
  for (;;) {
    if (i >= b.length) return more();
    if (b[i] === CR) {
      if (i + 1 >= b.length) return more();
      if (b[i + 1] !== LF) return { kind: 'other' };
      const end = i + 2;
      if (end > maxBytes) return { kind: 'other' };
      return { kind: 'connect', authority: b.toString('latin1', start, authorityEnd), rest: b.subarray(end) };
    }
    const nameStart = i;
    while (i < b.length && TCHAR[b[i]!]) i++;
    if (i === b.length) return more();
    if (i === nameStart || b[i] !== COLON) return { kind: 'other' };
    if (framing(b, nameStart, i)) return { kind: 'other' };
    i++;
    for (;;) {
      if (i >= b.length) return more();
      const c = b[i]!;
      if (c === CR) break;
      if (c === HTAB || (c >= SP && c < 0x7f)) {
        i++;
        continue;
      }
      return { kind: 'other' }; // bare LF, NUL, other control bytes, DEL, non-ASCII
    }
    if (i + 1 >= b.length) return more();
    if (b[i + 1] !== LF) return { kind: 'other' };
    i += 2;
    // obs-fold (a line starting with SP or HTAB) is not a header name: `other` at the next turn
  }
}
