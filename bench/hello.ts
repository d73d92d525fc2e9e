// A minimal, well-formed TLS 1.3-style ClientHello naming `sni`: what the gateway's SNI check reads
// before it lets a port-443 tunnel carry on. Nothing else in the bench speaks TLS.
export function clientHello(sni: string): Buffer {
  const name = Buffer.from(sni, 'ascii');
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const serverName = Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
  const ext = Buffer.concat([u16(0x0000), u16(serverName.length), serverName]);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // session id
    u16(2),
    Buffer.from([0x13, 0x01]), // TLS_AES_128_GCM_SHA256
    Buffer.from([1, 0]), // compression: null
    u16(ext.length),
    ext,
  ]);
  const hs = Buffer.concat([Buffer.from([0x01, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs]);
}

/** Length of the TLS record(s) at the start of `buf` that hold the ClientHello built above (one record). */
export const helloLength = (buf: Buffer): number => (buf.length >= 5 ? 5 + buf.readUInt16BE(3) : Infinity);

/**
 * A ServerHello record (not a HelloRetryRequest): the gateway inspects a tunnel's TLS until the server's
 * hello, so the stand-in servers answer with one before anything else.
 */
export const SERVER_HELLO: Buffer = (() => {
  const body = Buffer.concat([Buffer.from([0x03, 0x03]), Buffer.alloc(32, 9), Buffer.from([0, 0x13, 0x01, 0, 0, 0])]);
  const hs = Buffer.concat([Buffer.from([0x02, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x03, hs.length >> 8, hs.length & 0xff]), hs]);
})();

/** The bulk request (how many bytes to send back) as a TLS application-data record of 8 bytes. */
export function sizeRecord(bytes: number): Buffer {
  const r = Buffer.from([0x17, 0x03, 0x03, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
  r.writeBigUInt64BE(BigInt(bytes), 5);
  return r;
}
