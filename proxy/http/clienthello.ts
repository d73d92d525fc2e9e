// Read the server name (SNI) from a TLS ClientHello, and refuse the extensions that hide the real one. No I/O.

export type HelloResult = { status: 'invalid'; detail: string } | { status: 'ok'; sni?: string };

const EXT_SERVER_NAME = 0x0000;
/**
 * Extensions that carry another, encrypted server name: the outer SNI then says nothing about where the
 * connection goes. Encrypted Client Hello (RFC 9849, 0xfe0d, and its drafts 0xfe08–0xfe0c), its
 * ech_outer_extensions (0xfd00, only ever in an inner hello), and the older ESNI (0xffce).
 */
const HIDDEN_NAME = new Map<number, string>([
  [0xfe0d, 'Encrypted Client Hello'],
  [0xfe0c, 'Encrypted Client Hello (draft)'],
  [0xfe0b, 'Encrypted Client Hello (draft)'],
  [0xfe0a, 'Encrypted Client Hello (draft)'],
  [0xfe09, 'Encrypted Client Hello (draft)'],
  [0xfe08, 'Encrypted Client Hello (draft)'],
  [0xfd00, 'ech_outer_extensions'],
  [0xffce, 'encrypted SNI (ESNI)'],
]);

/** Parse a ClientHello message body (after the 4-byte handshake header). */
export function parseClientHello(b: Buffer): HelloResult {
  try {
    return parseHello(b);
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
    const hidden = HIDDEN_NAME.get(type);
    if (hidden) return { status: 'invalid', detail: `${hidden} hides the server name` };
    if (type !== EXT_SERVER_NAME) continue;
    if (seen) return { status: 'invalid', detail: 'two server_name extensions' };
    seen = true;
    const listEnd = 2 + data.readUInt16BE(0);
    if (listEnd !== data.length) return { status: 'invalid', detail: 'server_name list length mismatch' };
    for (let p = 2; p < listEnd;) {
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
