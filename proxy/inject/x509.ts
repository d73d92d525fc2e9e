// Minimal X.509 v3 certificates in DER, signed with node:crypto (ECDSA P-256, SHA-256): the per-project
// CA and the leaf certificates the gateway presents for the hosts whose credential it injects. Only what
// strict verifiers (rustls/webpki, OpenSSL with X509_STRICT as Python 3.13 uses it, Node) require: v3,
// subjectAltName, basicConstraints, keyUsage, extendedKeyUsage, subject and authority key identifiers.
// Pure apart from the signature.
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';

const tlv = (tag: number, body: Buffer): Buffer => {
  const n = body.length;
  const len =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : n < 0x10000
          ? Buffer.from([0x82, n >> 8, n & 0xff])
          : Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
};
const seq = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
const int = (b: Buffer) => tlv(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer) => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const ctx = (n: number, b: Buffer, constructed = true) => tlv((constructed ? 0xa0 : 0x80) | n, b);

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(d: Date): Buffer {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  return y < 2050 ? tlv(0x17, Buffer.from(`${p(y % 100)}${s}`)) : tlv(0x18, Buffer.from(`${y}${s}`));
}

const name = (cn: string, org: string) => seq(set(seq(oid('2.5.4.10'), utf8(org))), set(seq(oid('2.5.4.3'), utf8(cn))));
const ext = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

/** The key identifier of a public key: SHA-1 of its subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
function keyId(spki: Buffer): Buffer {
  // SubjectPublicKeyInfo = SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }: skip to the bits.
  let i = spki[1]! & 0x80 ? 2 + (spki[1]! & 0x7f) : 2;
  const algLen = spki[i + 1]!;
  i += 2 + algLen;
  const lenByte = spki[i + 1]!;
  const start = i + 2 + (lenByte & 0x80 ? lenByte & 0x7f : 0) + 1;
  return createHash('sha1').update(spki.subarray(start)).digest();
}

export interface CertificateSpec {
  /** Subject common name. */
  cn: string;
  /** DNS names (subjectAltName); none for a CA. */
  dnsNames?: string[];
  ca: boolean;
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** The issuer: its name and key; absent for a self-signed CA (signed with `signingKey`). */
  issuer?: { cn: string; publicKey: KeyObject };
  signingKey: KeyObject;
}

export const ORGANIZATION = 'codex-egress';

/** A DER certificate for `spec`. The DNS names must be validated host names (policy/names). */
export function certificate(spec: CertificateSpec): Buffer {
  const spki = spec.publicKey.export({ type: 'spki', format: 'der' });
  const issuerSpki = (spec.issuer?.publicKey ?? spec.publicKey).export({ type: 'spki', format: 'der' });
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  if (serial[0] === 0) serial[0] = 1;
  const exts = [
    ext('2.5.29.19', true, seq(...(spec.ca ? [bool(true), tlv(0x02, Buffer.from([0]))] : []))),
    // CA: keyCertSign + cRLSign (bits 5, 6); leaf: digitalSignature (bit 0).
    ext('2.5.29.15', true, spec.ca ? tlv(0x03, Buffer.from([1, 0x06])) : tlv(0x03, Buffer.from([7, 0x80]))),
    ext('2.5.29.14', false, octets(keyId(spki))),
    ext('2.5.29.35', false, seq(ctx(0, keyId(issuerSpki), false))),
    ...(spec.ca ? [] : [ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1')))]),
    ...(spec.dnsNames?.length ? [ext('2.5.29.17', false, seq(...spec.dnsNames.map((n) => ctx(2, Buffer.from(n, 'ascii'), false))))] : []),
  ];
  const tbs = seq(
    ctx(0, int(Buffer.from([2]))),
    int(serial),
    ECDSA_SHA256,
    name(spec.issuer?.cn ?? spec.cn, ORGANIZATION),
    seq(time(spec.notBefore), time(spec.notAfter)),
    name(spec.cn, ORGANIZATION),
    spki,
    ctx(3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, spec.signingKey);
  return seq(tbs, ECDSA_SHA256, bits(signature));
}

export const toPem = (der: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
