// An origin's response head, read by the plain-HTTP forwarder (proxy/http/plain.ts) before any of it
// reaches the client, and where the body after it ends. Stricter than Node's client parser: anything
// it does not read cleanly is the origin's error (502), never forwarded. Pure: no I/O.
//
//   HTTP/1.1 SP 3DIGIT [ SP reason ] CRLF          (or HTTP/1.0; reason: HTAB, SP, VCHAR, obs-text)
//   *( token ":" *( HTAB / SP / VCHAR / obs-text ) CRLF )
//   CRLF
import { listsClose } from './framing.js';
import { BYTE, MORE, readField, type Field } from './head.js';

export interface ResponseHead {
  version: '1.0' | '1.1';
  status: number;
  reason: string;
  /** name, value, … as written (values without the spaces around them). */
  headers: string[];
}

export type ResponseRead = { kind: 'need-more' } | { kind: 'bad'; detail: string } | { kind: 'head'; head: ResponseHead; rest: Buffer };

/** Where the body after a response head ends. */
export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Until the origin closes: HTTP/1.0 style. */
  | { kind: 'close' };

const PREFIX = Buffer.from('HTTP/1.', 'latin1');
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
/** HTAB, SP, VCHAR, obs-text: what a reason phrase (or a chunk extension or trailer, chunked.ts) may have. */
export const text = (c: number) => c === HTAB || (c >= SP && c !== 0x7f);
/** VCHAR, obs-text: a field value's bytes (besides SP and HTAB). */
const fieldByte = (c: number) => c > SP && c !== 0x7f;
const field: Field = { nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0, next: 0 };
const digit = (c: number) => c >= 0x30 && c <= 0x39;

export function readResponseHead(b: Buffer, maxBytes: number): ResponseRead {
  const more = (): ResponseRead =>
    b.length >= maxBytes ? { kind: 'bad', detail: 'upstream response head too large' } : { kind: 'need-more' };
  const bad = (detail: string): ResponseRead => ({ kind: 'bad', detail });
  let i = 0;
  for (; i < PREFIX.length; i++) {
    if (i === b.length) return more();
    if (b[i] !== PREFIX[i]) return bad('not an HTTP/1.x response');
  }
  if (b.length < 13) return more();
  const minor = b[7];
  if ((minor !== 0x30 && minor !== 0x31) || b[8] !== SP || !digit(b[9]!) || !digit(b[10]!) || !digit(b[11]!))
    return bad('malformed upstream status line');
  const status = (b[9]! - 0x30) * 100 + (b[10]! - 0x30) * 10 + (b[11]! - 0x30);
  i = 12;
  let reason = '';
  if (b[i] === SP) {
    const start = ++i;
    while (i < b.length && text(b[i]!)) i++;
    if (i === b.length) return more();
    reason = b.toString('latin1', start, i);
  }
  if (b[i] !== CR) return bad('malformed upstream status line');
  if (i + 1 >= b.length) return more();
  if (b[i + 1] !== LF) return bad('malformed upstream status line');
  i += 2;
  const headers: string[] = [];
  for (;;) {
    if (i >= b.length) return more();
    if (b[i] === CR) {
      if (i + 1 >= b.length) return more();
      if (b[i + 1] !== LF) return bad('malformed upstream header');
      const end = i + 2;
      if (end > maxBytes) return bad('upstream response head too large');
      return { kind: 'head', head: { version: minor === 0x31 ? '1.1' : '1.0', status, reason, headers }, rest: b.subarray(end) };
    }
    const r = readField(b, i, fieldByte, field);
    if (r === MORE) return more();
    if (r === BYTE) return bad('control bytes in an upstream header');
    if (r !== 0) return bad('malformed upstream header');
    headers.push(b.toString('latin1', field.nameStart, field.nameEnd), b.toString('latin1', field.valueStart, field.valueEnd));
    i = field.next;
  }
}

const CONTENT_LENGTH = /^[0-9]{1,15}$/;

/**
 * Where the body of a final response ends (RFC 9112 6.3), and whether the origin's connection may carry
 * another request after it. A framing that could be read two ways (Content-Length and Transfer-Encoding,
 * two lengths, a coding other than chunked) is the origin's error.
 */
export function responseFraming(
  method: string,
  head: ResponseHead,
): { ok: true; framing: BodyFraming; reusable: boolean } | { ok: false; detail: string } {
  const lengths: string[] = [];
  const codings: string[] = [];
  let close = head.version === '1.0';
  for (let i = 0; i < head.headers.length; i += 2) {
    const name = head.headers[i]!.toLowerCase();
    const value = head.headers[i + 1]!;
    if (name === 'content-length') lengths.push(value);
    else if (name === 'transfer-encoding') codings.push(value);
    else if (name === 'connection' && listsClose(value)) close = true;
  }
  if (lengths.length > 1) return { ok: false, detail: 'more than one Content-Length in the upstream answer' };
  if (lengths.length === 1 && !CONTENT_LENGTH.test(lengths[0]!))
    return { ok: false, detail: 'malformed Content-Length in the upstream answer' };
  if (codings.length > 1 || (codings.length === 1 && (codings[0]!.toLowerCase() !== 'chunked' || head.version !== '1.1')))
    return { ok: false, detail: 'an upstream Transfer-Encoding other than chunked' };
  if (codings.length && lengths.length) return { ok: false, detail: 'both Content-Length and Transfer-Encoding in the upstream answer' };
  if (method === 'HEAD' || head.status === 204 || head.status === 304) return { ok: true, framing: { kind: 'none' }, reusable: !close };
  if (codings.length) return { ok: true, framing: { kind: 'chunked' }, reusable: !close };
  if (lengths.length) return { ok: true, framing: { kind: 'length', length: Number(lengths[0]) }, reusable: !close };
  return { ok: true, framing: { kind: 'close' }, reusable: false };
}
