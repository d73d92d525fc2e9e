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
import { quoted } from '../quoted.js';

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

/**
 * A ClientHello split into this many TLS records (or more) is refused: clients send it in one record,
 * a few when it is large; a thousand one-byte records would only cost the gateway work.
 */
export const MAX_HELLO_RECORDS = 64;

/**
 * Bytes received in pieces, made contiguous only when a decision needs them (once per record or line,
 * not once per read): a peer trickling bytes one read at a time costs linear work, not quadratic.
 */
class Chunks {
  private list: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    if (b.length === 0) return;
    this.list.push(b);
    this.length += b.length;
  }
  /** All of it, contiguous. */
  flat(): Buffer {
    if (this.list.length > 1) this.list = [Buffer.concat(this.list, this.length)];
    return this.list[0] ?? EMPTY;
  }
  /** All of it, and empty from now on. */
  take(): Buffer {
    const b = this.flat();
    this.list = [];
    this.length = 0;
    return b;
  }
  /** The first `n` bytes, removed. */
  shift(n: number): Buffer {
    const b = this.flat();
    const rest = b.subarray(n);
    this.list = rest.length ? [rest] : [];
    this.length = rest.length;
    return b.subarray(0, n);
  }
}
const EMPTY = Buffer.alloc(0);

export class FirstBytes {
  private mode: 'start' | 'line' | 'tls' | 'done' = 'start';
  /** The client's bytes not sent on yet. */
  private pending = new Chunks();
  /** `line` mode (a `/tcp` rule, text so far): where the first line starts (after empty lines), and whether it has begun. */
  private lineStart = 0;
  private lineBegun = false;
  /** `tls` mode: of `pending`, the bytes in complete records read already (`checked` of them may be sent on), the next record's length. */
  private parsed = 0;
  private checked = 0;
  private recordNeed = 0;
  /** The handshake message being put together from the records read so far, and how many records it took. */
  private handshake = new Chunks();
  private handshakeRecords = 0;
  /** A ClientHello may come now (at the start, and once after a HelloRetryRequest). */
  private helloExpected = true;
  private hellos = 0;
  private retried = false;
  /** The origin's bytes not yet read, and the length of its next record once its header is read. */
  private server = new Chunks();
  private serverNeed = 0;
  /** The origin's handshake bytes not yet read (handshake messages can span records). */
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
    this.parsed = this.checked = 0;
    return this.pending.take();
  }

  /** Bytes from the client. */
  client(chunk: Buffer): Verdict {
    if (this.mode === 'done') return { kind: 'pass', bytes: chunk };
    this.pending.push(chunk);
    if (this.mode === 'line') return this.line(chunk);
    if (this.mode === 'start') {
      const v = this.classify();
      if (v) return v;
    }
    return this.mode === 'tls' ? this.tls() : { kind: 'need-more' };
  }

  /** The first bytes say which protocol this is; undefined while they do not say yet. */
  private classify(): Verdict | undefined {
    // Decided within the first MAX_SSH_LINE + 1 bytes (TLS at the first, HTTP within MAX_METHOD + 1), so
    // making them contiguous at each read is bounded; a `/tcp` rule's text goes on in `line` mode.
    const b = this.pending.flat();
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
    if (this.carries === 'any') {
      this.mode = 'line';
      return this.line(b);
    }
    return this.notAllowed('neither TLS, HTTP nor SSH');
  }

  /** Plain HTTP by another reading: the HTTP checks decide (their strict parser refuses what is not HTTP/1.x). */
  private toHttp(what: string): Verdict {
    if (this.carries === 'tls') return this.notAllowed(what);
    this.mode = 'done';
    return { kind: 'http', bytes: this.take() };
  }

  /**
   * Bytes that are neither TLS, SSH nor a plain request line, on a `/tcp` rule (`line` mode; `chunk`:
   * the bytes new since the last call, already in `pending`). Lenient HTTP servers also read a request
   * after empty lines, with a long method or a tab: a first line of text that names an HTTP version is
   * HTTP (held to the host). Waits for that line while the bytes are text; a line that never ends is
   * refused, never passed. Each byte is looked at once.
   */
  private line(chunk: Buffer): Verdict {
    let i = 0;
    if (!this.lineBegun) {
      while (i < chunk.length && (chunk[i] === 0x0d || chunk[i] === 0x0a)) i++;
      this.lineStart += i;
      if (i < chunk.length) this.lineBegun = true;
    }
    const lf = chunk.indexOf(0x0a, i);
    if (NOT_TEXT.test(chunk.subarray(i, lf < 0 ? chunk.length : lf).toString('latin1'))) {
      this.mode = 'done';
      return { kind: 'pass', bytes: this.take() };
    }
    if (lf < 0) return this.pending.length > MAX_HELLO_BYTES ? this.notAllowed('an over-long first line') : { kind: 'need-more' };
    const all = this.pending.flat();
    const end = all.length - chunk.length + lf;
    if (HTTP_VERSION.test(all.subarray(this.lineStart, end).toString('latin1'))) {
      this.pending.shift(this.lineStart); // the empty lines before it go nowhere
      return this.toHttp('plain HTTP');
    }
    this.mode = 'done';
    return { kind: 'pass', bytes: this.take() };
  }

  /**
   * Read the client's TLS records as they complete (each once, however the bytes were split); send on
   * those whose handshake messages are all checked.
   */
  private tls(): Verdict {
    for (;;) {
      const avail = this.pending.length - this.parsed;
      if (this.recordNeed === 0) {
        if (avail < 5) break;
        const h = this.pending.flat().subarray(this.parsed, this.parsed + 5);
        const type = h[0]!;
        const len = h.readUInt16BE(3);
        if (type < 0x14 || type > 0x17 || h[1] !== 3) return this.reject('sni-mismatch', 'not a TLS record');
        if (len > MAX_RECORD || (len === 0 && type !== 0x17)) return this.reject('sni-mismatch', 'bad TLS record length');
        this.recordNeed = 5 + len;
      }
      if (avail < this.recordNeed) break;
      const rec = this.pending.flat().subarray(this.parsed, this.parsed + this.recordNeed);
      this.parsed += this.recordNeed;
      this.recordNeed = 0;
      if (rec[0] === HANDSHAKE) {
        if (++this.handshakeRecords > MAX_HELLO_RECORDS)
          return this.reject('sni-mismatch', `a ClientHello in more than ${MAX_HELLO_RECORDS} records`);
        this.handshake.push(rec.subarray(5));
        while (this.handshake.length >= 4) {
          const hs = this.handshake.flat();
          const need = 4 + hs.readUIntBE(1, 3);
          if (need > MAX_HELLO_BYTES) return this.reject('sni-mismatch', 'ClientHello too large');
          if (hs.length < need) break;
          const v = this.hello(hs[0]!, hs.subarray(4, need));
          if (v) return v;
          this.handshake.shift(need);
          if (this.handshake.length === 0) this.handshakeRecords = 0;
        }
      } else if (this.handshake.length) {
        return this.reject('sni-mismatch', 'a record interleaved with a fragmented handshake message');
      }
      if (this.handshake.length === 0) this.checked = this.parsed;
    }
    if (this.pending.length - this.checked > MAX_HELLO_BYTES) return this.reject('sni-mismatch', 'ClientHello too large');
    if (this.checked === 0) return { kind: 'need-more' };
    const bytes = this.pending.shift(this.checked);
    this.parsed -= this.checked;
    this.checked = 0;
    return { kind: 'forward', bytes };
  }

  /** One handshake message from the client while inspecting: only a ClientHello, when one is due. */
  private hello(type: number, body: Buffer): Verdict | undefined {
    if (type !== CLIENT_HELLO) return this.reject('sni-mismatch', `handshake message ${type} before the server's hello`);
    if (!this.helloExpected) return this.reject('sni-mismatch', 'a second ClientHello without a HelloRetryRequest');
    const h = parseClientHello(body);
    if (h.status === 'invalid') return this.reject('sni-mismatch', h.detail);
    if (h.sni === undefined || !spellsName(h.sni, this.host)) {
      return this.reject(
        'sni-mismatch',
        `${this.hellos ? 'second ' : ''}SNI ${h.sni === undefined ? 'null' : quoted(h.sni)} is not ${this.host}`,
      );
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
    this.server.push(chunk);
    // Each record read once it is complete (an origin trickling its bytes costs linear work).
    for (let read = 0; ; read++) {
      if (this.serverNeed === 0) {
        if (this.server.length < 5) break;
        const h = this.server.flat();
        const len = h.readUInt16BE(3);
        const invalid =
          h[0]! < 0x14 || h[0]! > 0x17 || h[1] !== 3
            ? 'not a TLS record'
            : len > MAX_RECORD || (len === 0 && h[0] !== 0x17)
              ? 'bad TLS record length'
              : undefined;
        if (invalid) return this.reject('tls-required', read === 0 ? 'the server did not answer with TLS' : invalid);
        this.serverNeed = 5 + len;
      }
      if (this.server.length < this.serverNeed) break;
      const r = this.server.shift(this.serverNeed);
      this.serverNeed = 0;
      const type = r[0]!;
      if (type === 0x15 || type === 0x14) continue; // an alert (the connection ends), or a compatibility ChangeCipherSpec
      if (type !== HANDSHAKE) return this.reject('tls-required', 'the server sent data before its hello');
      let hs = this.serverHandshake.length ? Buffer.concat([this.serverHandshake, r.subarray(5)]) : r.subarray(5);
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
