// Hand-built TLS ClientHello records for first-bytes tests (no I/O).
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);

/** A well-formed TLS 1.3-style ClientHello record naming `sni` (or none), with extra extensions. */
export function clientHello(sni: string | undefined, extra: Array<[number, Buffer]> = []): Buffer {
  const exts: Buffer[] = [];
  if (sni !== undefined) {
    const name = Buffer.from(sni, 'latin1');
    const list = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    const data = Buffer.concat([u16(list.length), list]);
    exts.push(Buffer.concat([u16(0), u16(data.length), data]));
  }
  exts.push(Buffer.concat([u16(0x002b), u16(3), Buffer.from([2, 3, 4])])); // supported_versions: 1.3
  for (const [type, data] of extra) exts.push(Buffer.concat([u16(type), u16(data.length), data]));
  const ext = Buffer.concat(exts);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([0]),
    u16(2),
    Buffer.from([0x13, 0x01]),
    Buffer.from([1, 0]),
    u16(ext.length),
    ext,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
}

/** A ServerHello record; `retry` makes it a HelloRetryRequest. */
export function serverHello(retry: boolean): Buffer {
  const random = retry ? Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex') : Buffer.alloc(32, 9);
  const body = Buffer.concat([Buffer.from([3, 3]), random, Buffer.from([0, 0x13, 0x01, 0, 0, 6, 0, 0x2b, 0, 2, 3, 4])]);
  const hs = Buffer.concat([Buffer.from([2, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 3]), u16(hs.length), hs]);
}
