// The first-bytes check of a CONNECT tunnel, as a pure state machine. No I/O.
//
// The client's bytes are fed in as they arrive and held until they are known to be harmless; the
// origin's bytes are fed in too (they are always sent on) because only the origin says when a TLS
// handshake is over. What a tunnel may carry depends on the rule (policy/allowlist.ts `Carries`):
//   TLS   every ClientHello (the first, and the second after a HelloRetryRequest) names the tunnel's
//         host as SNI, with no Encrypted Client Hello or ESNI; inspection lasts until the origin's
//         ServerHello (not a HelloRetryRequest) — after it, no plaintext ClientHello can follow.
//   HTTP  (port rules) handed to the proxy's HTTP server: every request on the tunnel is checked.
//   SSH   (port rules) a well-formed SSH identification line; SSH names no host.
//   other only on a `/tcp` rule.
import type { Carries } from '../policy/allowlist.js';
import { parseClientHello } from './clienthello.js';
import { spellsName } from './target.js';

export type FirstBytesReason = 'sni-mismatch' | 'tls-required' | 'protocol-not-allowed';

export type Verdict =
  /** Nothing to send on yet. */
  | { kind: 'need-more' }
  /** Send these client bytes on and keep feeding. */
  | { kind: 'forward'; bytes: Buffer }
  /** Send these client bytes on and stop inspecting: the tunnel is a plain pipe from now on. */
  | { kind: 'pass'; bytes: Buffer }
  /** Plain HTTP: give these bytes (and the rest of the connection) to the HTTP request checks. */
  | { kind: 'http'; bytes: Buffer }
  | { kind: 'reject'; reason: FirstBytesReason; detail: string };

/** A ClientHello (and all records held with it) larger than this is refused rather than buffered. */
export const MAX_HELLO_BYTES = 64 * 1024;
const MAX_RECORD = 16384 + 2048;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const SERVER_HELLO = 2;
/** The `random` of a ServerHello that is really a HelloRetryRequest (RFC 8446 4.1.3). */
const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
const TCHAR = /^[!#$%&'*+.^_`|~0-9A-Za-z-]$/;
const SSH_LINE = /^SSH-(2\.0|1\.99)-[\x21-\x2c\x2e-\x7e]+( [\x20-\x7e]*)?\r?\n/;
const MAX_SSH_LINE = 255;
const MAX_METHOD = 32;
/** A line naming an HTTP version, as a request line does (any case, after a space or tab). */
const HTTP_VERSION = /[\t\x0b\x0c ]HTTP\/[0-9]/i;
/** Bytes no HTTP request line has (control bytes other than tab, VT, FF and CR). */
const NOT_TEXT = /[\x00-\x08\x0e-\x1f\x7f]/;

type Record = { type: number; body: Buffer; end: number };

/** The complete records at the start of `buf`; `invalid` when a header is not a TLS record's. */
function records(buf: Buffer): { recs: Record[]; invalid?: string } {
  const recs: Record[] = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    const type = buf[off]!;
    if (type < 0x14 || type > 0x17 || buf[off + 1] !== 3) return { recs, invalid: 'not a TLS record' };
    const len = buf.readUInt16BE(off + 3);
    if (len > MAX_RECORD || (len === 0 && type !== 0x17)) return { recs, invalid: 'bad TLS record length' };
    if (off + 5 + len > buf.length) break;
    recs.push({ type, body: buf.subarray(off + 5, off + 5 + len), end: off + 5 + len });
    off += 5 + len;
  }
  return { recs };
}

export class FirstBytes {
  private mode: 'start' | 'tls' | 'done' = 'start';
  private pending: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  /** A ClientHello may come now (at the start, and once after a HelloRetryRequest). */
  private helloExpected = true;
  private hellos = 0;
  private retried = false;
  /** The origin's bytes not yet read (handshake messages can span records). */
  private server: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  private serverHandshake: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  /** Bytes of a HelloRetryRequest still to come in later records. */
  private skip = 0;

  constructor(
    private readonly host: string,
    private readonly carries: Carries,
  ) {}

  private reject(reason: FirstBytesReason, detail: string): Verdict {
    this.mode = 'done';
    return { kind: 'reject', reason, detail };
  }

  private notAllowed(what: string): Verdict {
    return this.carries === 'tls'
      ? this.reject('tls-required', `${what}: only TLS is allowed on a rule without a port`)
      : this.reject('protocol-not-allowed', `${what}: allowed only on a host:port/tcp rule`);
  }

  private take(): Buffer {
    const b = this.pending;
    this.pending = Buffer.alloc(0);
    return b;
  }

  /** Bytes from the client. */
  client(chunk: Buffer): Verdict {
    if (this.mode === 'done') return { kind: 'pass', bytes: chunk };
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.mode === 'start') {
      const v = this.classify();
      if (v) return v;
    }
    return this.mode === 'tls' ? this.tls() : { kind: 'need-more' };
  }

  /** The first bytes say which protocol this is; undefined while they do not say yet. */
  private classify(): Verdict | undefined {
    const b = this.pending;
    if (b.length === 0) return { kind: 'need-more' };
    if (b[0] === HANDSHAKE) {
      this.mode = 'tls';
      return undefined;
    }
    const text = b.subarray(0, MAX_SSH_LINE + 1).toString('latin1');
    if ('SSH-'.startsWith(text.slice(0, 4))) {
      if (text.length < 4 || !text.includes('\n')) {
        return text.length > MAX_SSH_LINE ? this.notAllowed('an over-long SSH identification') : { kind: 'need-more' };
      }
      if (!SSH_LINE.test(text)) return this.notAllowed('a malformed SSH identification line');
      // `SSH-2.0-x /path HTTP/1.1` is also a request line to an origin that takes any method token.
      if (HTTP_VERSION.test(text.slice(0, text.indexOf('\n')))) return this.toHttp('an SSH line that names an HTTP version');
      if (this.carries === 'tls') return this.notAllowed('SSH');
      this.mode = 'done';
      return { kind: 'pass', bytes: this.take() };
    }
    // An HTTP/1.x request line starts with a method token and a space: hand it to the HTTP checks,
    // whose strict parser refuses whatever is not HTTP/1.x (h2 prior knowledge included).
    let i = 0;
    while (i < b.length && i < MAX_METHOD && TCHAR.test(String.fromCharCode(b[i]!))) i++;
    if (i > 0 && i < b.length && b[i] === 0x20) {
      if (this.carries === 'tls') return this.notAllowed('plain HTTP');
      this.mode = 'done';
      return { kind: 'http', bytes: this.take() };
    }
    if (i === b.length && i < MAX_METHOD) return { kind: 'need-more' };
    if (this.carries === 'any') return this.opaque();
    return this.notAllowed('neither TLS, HTTP nor SSH');
  }

  /** Plain HTTP by another reading: the HTTP checks decide (their strict parser refuses what is not HTTP/1.x). */
  private toHttp(what: string): Verdict {
    if (this.carries === 'tls') return this.notAllowed(what);
    this.mode = 'done';
    return { kind: 'http', bytes: this.take() };
  }

  /**
   * Bytes that are neither TLS, SSH nor a plain request line, on a `/tcp` rule. Lenient HTTP servers
   * also read a request after empty lines, with a long method or a tab: a first line of text that
   * names an HTTP version is HTTP (held to the host). Waits for that line while the bytes are text;
   * a line that never ends is refused, never passed.
   */
  private opaque(): Verdict {
    const b = this.pending;
    let start = 0;
    while (start < b.length && (b[start] === 0x0d || b[start] === 0x0a)) start++;
    const lf = b.indexOf(0x0a, start);
    const line = b.subarray(start, lf < 0 ? b.length : lf).toString('latin1');
    if (!NOT_TEXT.test(line)) {
      if (lf < 0) return b.length > MAX_HELLO_BYTES ? this.notAllowed('an over-long first line') : { kind: 'need-more' };
      if (HTTP_VERSION.test(line)) {
        this.pending = b.subarray(start);
        return this.toHttp('plain HTTP');
      }
    }
    this.mode = 'done';
    return { kind: 'pass', bytes: this.take() };
  }

  /** Walk the client's complete TLS records; send on those whose handshake messages are all checked. */
  private tls(): Verdict {
    const { recs, invalid } = records(this.pending);
    let handshake: Buffer<ArrayBufferLike> = Buffer.alloc(0);
    let cut = 0;
    for (const r of recs) {
      if (r.type === HANDSHAKE) {
        handshake = handshake.length ? Buffer.concat([handshake, r.body]) : r.body;
        while (handshake.length >= 4) {
          const need = 4 + handshake.readUIntBE(1, 3);
          if (need > MAX_HELLO_BYTES) return this.reject('sni-mismatch', 'ClientHello too large');
          if (handshake.length < need) break;
          const v = this.hello(handshake[0]!, handshake.subarray(4, need));
          if (v) return v;
          handshake = handshake.subarray(need);
        }
      } else if (handshake.length) {
        return this.reject('sni-mismatch', 'a record interleaved with a fragmented handshake message');
      }
      if (handshake.length === 0) cut = r.end;
    }
    if (invalid) return this.reject('sni-mismatch', invalid);
    if (this.pending.length - cut > MAX_HELLO_BYTES) return this.reject('sni-mismatch', 'ClientHello too large');
    if (cut === 0) return { kind: 'need-more' };
    const bytes = this.pending.subarray(0, cut);
    this.pending = this.pending.subarray(cut);
    return { kind: 'forward', bytes };
  }

  /** One handshake message from the client while inspecting: only a ClientHello, when one is due. */
  private hello(type: number, body: Buffer): Verdict | undefined {
    if (type !== CLIENT_HELLO) return this.reject('sni-mismatch', `handshake message ${type} before the server's hello`);
    if (!this.helloExpected) return this.reject('sni-mismatch', 'a second ClientHello without a HelloRetryRequest');
    const h = parseClientHello(body);
    if (h.status === 'invalid') return this.reject('sni-mismatch', h.detail);
    if (h.sni === undefined || !spellsName(h.sni, this.host)) {
      return this.reject('sni-mismatch', `${this.hellos ? 'second ' : ''}SNI ${JSON.stringify(h.sni ?? null)} is not ${this.host}`);
    }
    this.helloExpected = false;
    this.hellos++;
    return undefined;
  }

  /**
   * Bytes from the origin (always sent on by the caller). Returns `pass` (with the client bytes still
   * held) once the handshake is past the point where a plaintext ClientHello could follow, `reject`
   * when the origin does not answer TLS with TLS, else `need-more`.
   */
  fromServer(chunk: Buffer): Verdict {
    if (this.mode === 'done') return { kind: 'pass', bytes: Buffer.alloc(0) };
    if (this.mode !== 'tls') return { kind: 'need-more' };
    this.server = this.server.length ? Buffer.concat([this.server, chunk]) : chunk;
    const { recs, invalid } = records(this.server);
    if (invalid && recs.length === 0) return this.reject('tls-required', 'the server did not answer with TLS');
    this.server = recs.length ? this.server.subarray(recs.at(-1)!.end) : this.server;
    for (const r of recs) {
      if (r.type === 0x15 || r.type === 0x14) continue; // an alert (the connection ends), or a compatibility ChangeCipherSpec
      if (r.type !== HANDSHAKE) return this.reject('tls-required', 'the server sent data before its hello');
      let hs = this.serverHandshake.length ? Buffer.concat([this.serverHandshake, r.body]) : r.body;
      if (this.skip) {
        const n = Math.min(this.skip, hs.length);
        hs = hs.subarray(n);
        this.skip -= n;
      }
      while (hs.length >= 38) {
        if (hs[0] !== SERVER_HELLO) return this.reject('tls-required', 'the server did not answer with a ServerHello');
        const need = 4 + hs.readUIntBE(1, 3);
        if (!hs.subarray(6, 38).equals(HRR_RANDOM)) {
          if (this.helloExpected) return this.reject('tls-required', 'a ServerHello before the ClientHello');
          this.mode = 'done';
          return { kind: 'pass', bytes: this.take() };
        }
        if (this.retried) return this.reject('tls-required', 'a second HelloRetryRequest');
        this.retried = true;
        this.helloExpected = true;
        if (hs.length < need) {
          this.skip = need - hs.length; // the rest of the HelloRetryRequest, in the next records
          hs = Buffer.alloc(0);
        } else hs = hs.subarray(need);
      }
      this.serverHandshake = hs;
    }
    if (invalid) return this.reject('tls-required', invalid);
    return { kind: 'need-more' };
  }

  /** The time for the first bytes (or the whole handshake) ran out. */
  timeout(): Verdict {
    if (this.mode === 'done') return { kind: 'pass', bytes: Buffer.alloc(0) };
    if (this.mode === 'start' && this.pending.length === 0 && this.carries === 'any') {
      this.mode = 'done';
      return { kind: 'pass', bytes: Buffer.alloc(0) };
    }
    if (this.mode === 'tls') return this.reject('sni-mismatch', 'the TLS handshake did not finish in time');
    return this.notAllowed('no first bytes in time');
  }
}
