// Where a chunked body ends (RFC 9112 7.1), read as it streams past: the plain-HTTP forwarder passes
// the origin's chunks on as they came (not its trailer fields), so it needs to know where the message
// ends and that it is well formed. Strict: a chunk size of hex digits (at most 12 after leading zeros),
// extensions `;name[=token or quoted-string]` (RFC 9112 7.1.1), trailer lines `name: value`, CRLF
// everywhere; anything else is the origin's error (ATTACK9: extensions and trailers were taken as any
// visible bytes, and passed on). Pure: no I/O.
import { text } from './response-head.js';

// States
const SizeStart = 0;
const Size = 1;
const Ext = 2;
const SizeLf = 3;
const Data = 4;
const DataCr = 5;
const DataLf = 6;
const TrailerStart = 7;
const Trailer = 8;
const TrailerLf = 9;
const EndLf = 10;
const Done = 11;

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const EXT = `[ \\t]*;[ \\t]*${TOKEN}(?:[ \\t]*=[ \\t]*(?:${TOKEN}|${QUOTED}))?`;
/** What may follow a chunk size before its CRLF (when anything does): one or more extensions. */
const EXTENSIONS = new RegExp(`^(?:${EXT})+$`);
const TRAILER = new RegExp(`^${TOKEN}:[\\t \\x21-\\x7e\\x80-\\xff]*$`);
/** The longest extension text of one chunk, and trailer section, read. */
const MAX_LINE = 4096;
const CR = 0x0d;
const LF = 0x0a;
const MAX_SIZE_DIGITS = 12;

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

export class ChunkedBody {
  private s: number = SizeStart;
  private size = 0;
  private digits = 0;
  private left = 0;
  /** The extension text of this chunk, or the trailer line, read so far. */
  private line = '';
  private trailerBytes = 0;
  /**
   * Where the trailer section starts in the buffer last fed (-1: not in it): the forwarder passes the
   * chunks on and drops the trailers, as Node's client did (their fields are never checked as headers).
   */
  trailerAt = -1;

  /**
   * Read `b` from `from`. Returns the index just past the body's last byte when it ends in `b`, -1 when
   * it goes on, or a string saying what is wrong.
   */
  feed(b: Buffer, from = 0): number | string {
    let i = from;
    this.trailerAt = this.s >= TrailerStart ? from : -1;
    while (i < b.length) {
      const c = b[i]!;
      switch (this.s) {
        case SizeStart:
        case Size: {
          const h = hex(c);
          if (h >= 0) {
            // leading zeros do not count
            if ((this.size > 0 || h > 0) && ++this.digits > MAX_SIZE_DIGITS) return 'chunk size too large';
            this.size = this.size * 16 + h;
            this.s = Size;
          } else if (this.s === SizeStart) return 'malformed chunk size';
          else if (c === CR) this.s = SizeLf;
          else if (c === 0x3b || c === 0x20 || c === 0x09) {
            this.s = Ext;
            this.line = String.fromCharCode(c);
          } else return 'malformed chunk size';
          i++;
          break;
        }
        case Ext:
          if (c === CR) {
            if (!EXTENSIONS.test(this.line)) return 'malformed chunk extension';
            this.s = SizeLf;
          } else if (!text(c) || this.line.length >= MAX_LINE) return 'malformed chunk extension';
          else this.line += String.fromCharCode(c);
          i++;
          break;
        case SizeLf:
          if (c !== LF) return 'malformed chunk size line';
          i++;
          if (this.size === 0) {
            this.s = TrailerStart;
            this.trailerAt = i;
          } else {
            this.left = this.size;
            this.s = Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case Data: {
          const n = Math.min(this.left, b.length - i);
          this.left -= n;
          i += n;
          if (this.left === 0) this.s = DataCr;
          break;
        }
        case DataCr:
          if (c !== CR) return 'chunk longer than its size';
          this.s = DataLf;
          i++;
          break;
        case DataLf:
          if (c !== LF) return 'chunk longer than its size';
          this.s = SizeStart;
          i++;
          break;
        case TrailerStart:
          // an empty line ends the trailer section; anything else starts a trailer line (read below)
          this.line = '';
          if (c === CR) {
            this.s = EndLf;
            i++;
          } else this.s = Trailer;
          break;
        case Trailer:
          if (c === CR) {
            if (!TRAILER.test(this.line)) return 'malformed trailer';
            this.s = TrailerLf;
          } else if (!text(c) || ++this.trailerBytes > MAX_LINE) return 'malformed trailer';
          else this.line += String.fromCharCode(c);
          i++;
          break;
        case TrailerLf:
          if (c !== LF) return 'malformed trailer';
          this.s = TrailerStart;
          i++;
          break;
        case EndLf:
          if (c !== LF) return 'malformed end of a chunked body';
          this.s = Done;
          return i + 1;
        case Done:
          return i;
      }
    }
    return -1;
  }
}
