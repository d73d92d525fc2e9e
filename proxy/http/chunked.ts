// Where a chunked body ends (RFC 9112 7.1), read as it streams past: the plain-HTTP forwarder passes
// the origin's chunks on as they came and needs to know only where the message ends and that it is
// well formed. Strict: a chunk size of hex digits (at most 12), an extension or trailer line of
// visible bytes, CRLF everywhere; anything else is the origin's error. Pure: no I/O.

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

const CR = 0x0d;
const LF = 0x0a;
const MAX_SIZE_DIGITS = 12;

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
/** HTAB, SP, VCHAR, obs-text. */
const text = (c: number) => c === 0x09 || (c >= 0x20 && c !== 0x7f);

export class ChunkedBody {
  private s: number = SizeStart;
  private size = 0;
  private digits = 0;
  private left = 0;

  /**
   * Read `b` from `from`. Returns the index just past the body's last byte when it ends in `b`, -1 when
   * it goes on, or a string saying what is wrong.
   */
  feed(b: Buffer, from = 0): number | string {
    let i = from;
    while (i < b.length) {
      const c = b[i]!;
      switch (this.s) {
        case SizeStart:
        case Size: {
          const h = hex(c);
          if (h >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return 'chunk size too large';
            this.size = this.size * 16 + h;
            this.s = Size;
          } else if (this.s === SizeStart) return 'malformed chunk size';
          else if (c === CR) this.s = SizeLf;
          else if (c === 0x3b || c === 0x20 || c === 0x09) this.s = Ext;
          else return 'malformed chunk size';
          i++;
          break;
        }
        case Ext:
          if (c === CR) this.s = SizeLf;
          else if (!text(c)) return 'malformed chunk extension';
          i++;
          break;
        case SizeLf:
          if (c !== LF) return 'malformed chunk size line';
          i++;
          if (this.size === 0) this.s = TrailerStart;
          else {
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
          this.s = c === CR ? EndLf : Trailer;
          if (c !== CR && !text(c)) return 'malformed trailer';
          i++;
          break;
        case Trailer:
          if (c === CR) this.s = TrailerLf;
          else if (!text(c)) return 'malformed trailer';
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
