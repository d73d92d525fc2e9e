// The proxy port's request-head reader: a connection's bytes, read without http.Server. It recognises
// one shape only, stricter than Node's parser (llhttp):
//
//   method SP request-target SP HTTP/1.1 CRLF      (or HTTP/1.0; method: uppercase letters)
//   *( token ":" *( VCHAR / SP / HTAB ) CRLF )     (request-target: VCHAR)
//   CRLF
//
// Anything else — lowercase, a bare LF, a tab or two spaces in the request line, a control or non-ASCII
// byte, obs-fold, a missing or other version, the HTTP/2 preface, a head over the size limit — is
// `other`: the connection goes to the http.Server path unchanged, which answers it exactly as before (a
// request, a 400, a 431). Two fast paths take a head read here: a CONNECT (readConnectHead: its
// authority, and the bytes after the head are the tunnel's) and an absolute-form plain-HTTP request
// (plainEligible, proxy/http/plain.ts). Pure: no I/O.

export type HeadRead =
  /** Nothing decided yet: more bytes are needed (the prefix so far could still be a clean head). */
  | { kind: 'need-more' }
  /** Not a clean head: the http.Server path decides. */
  | { kind: 'other' }
  /** A complete head, and the bytes that followed it. */
  | { kind: 'head'; head: RequestHead; rest: Buffer };

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  /**
   * name, value, name, value, … as written (values without the spaces around them), like Node's
   * rawHeaders. Not collected for a CONNECT, whose headers nothing reads (a tunnel's set-up is the
   * hottest path): `frames` says whether one of them frames a body.
   */
  headers: string[];
  /** A Content-Length or Transfer-Encoding header is present. */
  frames: boolean;
}

export type ConnectRead = { kind: 'need-more' } | { kind: 'other' } | { kind: 'connect'; authority: string; rest: Buffer };

const VERSION = Buffer.from(' HTTP/1.', 'latin1');
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** Bytes a CONNECT authority may have here: ALPHA DIGIT . - _ : [ ] */
const AUTHORITY = /^[A-Za-z0-9._:[\]-]+$/;
/** tchar (RFC 9110): ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~ (1 for each such byte). */
const TCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  TCHAR[c] = /^[A-Za-z0-9]$/.test(ch) || "!#$%&'*+-.^_`|~".includes(ch) ? 1 : 0;
}
const isUpper = (c: number) => c >= 0x41 && c <= 0x5a;
const isVchar = (c: number) => c > SP && c < 0x7f;

/**
 * Read a head from the first byte of `b` (everything received so far). `maxBytes` bounds the head
 * (request line, headers and the empty line): a longer one is `other` (http.Server then answers 431 or
 * 400 as before).
 */
export function readHead(b: Buffer, maxBytes: number): HeadRead {
  const more = (): HeadRead => (b.length >= maxBytes ? { kind: 'other' } : { kind: 'need-more' });
  const other: HeadRead = { kind: 'other' };
  let i = 0;
  while (i < b.length && isUpper(b[i]!)) i++;
  if (i === b.length) return more();
  if (i === 0 || b[i] !== SP) return other;
  const method = b.toString('latin1', 0, i);
  const targetStart = ++i;
  while (i < b.length && isVchar(b[i]!)) i++;
  if (i === b.length) return more();
  if (i === targetStart || b[i] !== SP) return other;
  const target = b.toString('latin1', targetStart, i);
  // " HTTP/1." then 0 or 1, CR, LF
  for (let k = 0; k < VERSION.length; k++, i++) {
    if (i === b.length) return more();
    if (b[i] !== VERSION[k]) return other;
  }
  if (i === b.length) return more();
  const minor = b[i++];
  if (minor !== 0x30 && minor !== 0x31) return other;
  if (i === b.length) return more();
  if (b[i++] !== CR) return other;
  if (i === b.length) return more();
  if (b[i++] !== LF) return other;
  const headers: string[] = [];
  const collect = method !== 'CONNECT';
  let frames = false;
  // header lines, then the empty line
  for (;;) {
    if (i >= b.length) return more();
    if (b[i] === CR) {
      if (i + 1 >= b.length) return more();
      if (b[i + 1] !== LF) return other;
      const end = i + 2;
      if (end > maxBytes) return other;
      return { kind: 'head', head: { method, target, version: minor === 0x31 ? '1.1' : '1.0', headers, frames }, rest: b.subarray(end) };
    }
    // bare LF, NUL, other control bytes, DEL, non-ASCII: `other`
    const r = readField(b, i, isVchar, field);
    if (r === MORE) return more();
    if (r !== 0) return other;
    const f = field;
    if (collect) headers.push(b.toString('latin1', f.nameStart, f.nameEnd), b.toString('latin1', f.valueStart, f.valueEnd));
    if (!frames) frames = framing(b, f.nameStart, f.nameEnd);
    i = f.next;
    // obs-fold (a line starting with SP or HTAB) is not a header name: `other` at the next turn
  }
}

/** Where readField found a header line's name and value (value without the spaces around it), and the next line. */
export interface Field {
  nameStart: number;
  nameEnd: number;
  valueStart: number;
  valueEnd: number;
  next: number;
}
const field: Field = { nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0, next: 0 };
/** readField's answers besides 0 (read): the buffer ends first; not a header line; a byte the value may not have. */
export const MORE = -1;
export const SYNTAX = -2;
export const BYTE = -3;

/**
 * Read the header line at `i` of `b` into `f`: `token ":" *(SP / HTAB / value byte) CRLF`, where a value
 * byte is one `valueByte` accepts (SP and HTAB around the value are not part of it). Used by the request
 * and the response head readers (response-head.ts); they differ in the value bytes they accept.
 */
export function readField(b: Buffer, i: number, valueByte: (c: number) => boolean, f: Field): number {
  const nameStart = i;
  while (i < b.length && TCHAR[b[i]!]) i++;
  if (i === b.length) return MORE;
  if (i === nameStart || b[i] !== COLON) return SYNTAX;
  f.nameStart = nameStart;
  f.nameEnd = i++;
  f.valueStart = f.valueEnd = i;
  let empty = true;
  for (;;) {
    if (i >= b.length) return MORE;
    const c = b[i]!;
    if (c === CR) break;
    if (c !== HTAB && c !== SP) {
      if (!valueByte(c)) return BYTE;
      if (empty) f.valueStart = i;
      empty = false;
      f.valueEnd = i + 1;
    }
    i++;
  }
  if (empty) f.valueStart = f.valueEnd = i;
  if (i + 1 >= b.length) return MORE;
  if (b[i + 1] !== LF) return SYNTAX;
  f.next = i + 2;
  return 0;
}

/** The value of the first header named `name` (lowercase), in any case, in raw pairs. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === name) return headers[i + 1];
  return undefined;
}

/** Is `headers` (raw pairs) free of any header named `names` (lowercase), in any case? */
export function lacksHeaders(headers: readonly string[], names: ReadonlySet<string>): boolean {
  for (let i = 0; i < headers.length; i += 2) if (names.has(headers[i]!.toLowerCase())) return false;
  return true;
}

/** A header name (b[from, to)) that frames a body, in any case: Content-Length or Transfer-Encoding. */
function framing(b: Buffer, from: number, to: number): boolean {
  const n = to - from;
  if (n !== 14 && n !== 17) return false;
  const name = b.toString('latin1', from, to).toLowerCase();
  return name === 'content-length' || name === 'transfer-encoding';
}

/**
 * The CONNECT fast path: a clean head whose method is CONNECT, whose target is an authority's bytes
 * (parseAuthority decides the rest) and that frames no body. The bytes after it are the tunnel's first
 * client bytes, never a second request.
 */
export function readConnectHead(b: Buffer, maxBytes: number): ConnectRead {
  const r = readHead(b, maxBytes);
  if (r.kind !== 'head') return r;
  const authority = connectAuthority(r.head);
  return authority === undefined ? { kind: 'other' } : { kind: 'connect', authority, rest: r.rest };
}

/** A head's CONNECT authority, when it is a clean CONNECT head (readConnectHead). */
export function connectAuthority(h: RequestHead): string | undefined {
  return h.method === 'CONNECT' && AUTHORITY.test(h.target) && !h.frames ? h.target : undefined;
}
