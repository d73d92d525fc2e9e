// Read the server name (SNI) from the first bytes a client sends in a tunnel. No I/O.

export type HelloResult =
  | { status: 'need-more' }
  /** The first byte is not a TLS handshake record. */
  | { status: 'not-tls' }
  | { status: 'invalid'; detail: string }
  | { status: 'ok'; sni?: string };

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
/** A ClientHello larger than this is refused rather than buffered. */
export const MAX_HELLO_BYTES = 64 * 1024;

/** Join the handshake fragments of consecutive TLS records (a ClientHello may span several). */
function handshakeBytes(buf: Buffer): { bytes: Buffer; complete: boolean } | { invalid: string } {
  const parts: Buffer[] = [];
  let off = 0;
  let total = 0;
  while (off + 5 <= buf.length) {
    if (buf[off] !== HANDSHAKE) return { invalid: 'non-handshake record before the ClientHello ended' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return { invalid: 'bad TLS record length' };
    if (off + 5 + len > buf.length) break;
    parts.push(buf.subarray(off + 5, off + 5 + len));
    total += len;
    off += 5 + len;
    const hs = Buffer.concat(parts, total);
    if (hs.length >= 4) {
      const need = 4 + hs.readUIntBE(1, 3);
      if (hs.length >= need) return { bytes: hs.subarray(0, need), complete: true };
    }
  }
  return { bytes: Buffer.concat(parts, total), complete: false };
}

export function readClientHello(buf: Buffer): HelloResult {
  if (buf.length === 0) return { status: 'need-more' };
  if (buf[0] !== HANDSHAKE) return { status: 'not-tls' };
  if (buf.length > MAX_HELLO_BYTES) return { status: 'invalid', detail: 'ClientHello too large' };
  const hs = handshakeBytes(buf);
  if ('invalid' in hs) return { status: 'invalid', detail: hs.invalid };
  if (hs.bytes.length >= 1 && hs.bytes[0] !== CLIENT_HELLO) return { status: 'invalid', detail: 'first handshake message is not a ClientHello' };
  if (!hs.complete) return { status: 'need-more' };
  try {
    return parseHello(hs.bytes.subarray(4));
  } catch {
    return { status: 'invalid', detail: 'malformed ClientHello' };
  }
}

/** Parse a ClientHello body; throws RangeError on truncation. */
function parseHello(b: Buffer): HelloResult {
  let off = 2 + 32; // legacy_version, random
  off += 1 + b.readUInt8(off); // session id
  off += 2 + b.readUInt16BE(off); // cipher suites
  off += 1 + b.readUInt8(off); // compression methods
  if (off === b.length) return { status: 'ok' }; // no extensions at all
  const extEnd = off + 2 + b.readUInt16BE(off);
  if (extEnd !== b.length) return { status: 'invalid', detail: 'extensions length mismatch' };
  off += 2;
  let sni: string | undefined;
  let seen = false;
  while (off < extEnd) {
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    const data = b.subarray(off + 4, off + 4 + len);
    if (data.length !== len) return { status: 'invalid', detail: 'truncated extension' };
    off += 4 + len;
    if (type !== EXT_SERVER_NAME) continue;
    if (seen) return { status: 'invalid', detail: 'two server_name extensions' };
    seen = true;
    const listEnd = 2 + data.readUInt16BE(0);
    if (listEnd !== data.length) return { status: 'invalid', detail: 'server_name list length mismatch' };
    for (let p = 2; p < listEnd; ) {
      const nameType = data.readUInt8(p);
      const nameLen = data.readUInt16BE(p + 1);
      const name = data.subarray(p + 3, p + 3 + nameLen);
      if (name.length !== nameLen) return { status: 'invalid', detail: 'truncated server name' };
      p += 3 + nameLen;
      if (nameType !== 0) continue;
      if (sni !== undefined) return { status: 'invalid', detail: 'two host names in server_name' };
      sni = name.toString('latin1');
    }
  }
  if (off !== extEnd) return { status: 'invalid', detail: 'extensions overrun' };
  return { status: 'ok', sni };
}
