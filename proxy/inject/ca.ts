// The per-project CA of the credential injection: made once on the host (`up`, in the project's state
// directory, outside the workdir), its certificate given to the sandbox to trust, its key to the gateway
// only. The gateway issues from it one leaf certificate per injected host (kept in memory, renewed
// before it expires).
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { certificate, toPem } from './x509.js';

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';
const DAY = 86_400_000;
const CA_LIFETIME = 3650 * DAY;
const LEAF_LIFETIME = 7 * DAY;
/** A CA with less than this left is replaced (the sandbox gets the new certificate at its next `up`). */
const CA_RENEW_BEFORE = 30 * DAY;

export interface CaFiles {
  cert: string;
  key: string;
  /** The certificate as checked or made (copy these bytes, never the file: it may change). */
  certPem: string;
  /** Made now (false: the existing one was still good). */
  created: boolean;
}

/** Write a new file: never an existing name or through a link (O_EXCL|O_NOFOLLOW), mode set on the descriptor. */
export function writeNewFile(path: string, data: string, mode: number): void {
  rmSync(path, { force: true });
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    writeSync(fd, data);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

const isFile = (path: string) => lstatSync(path, { throwIfNoEntry: false })?.isFile() === true;

/**
 * The CA in `dir` (ca.pem, ca-key.pem), made when missing, unreadable, not plain files or near its end.
 * The key file is 0640 (the gateway reads it through the user's group), the certificate 0644. The
 * caller makes `dir` safely (image/credentials.ts: no link on the way); here it is made only if missing.
 */
export function ensureCa(dir: string, project: string, now = new Date()): CaFiles {
  const cert = join(dir, CA_CERT_FILE);
  const key = join(dir, CA_KEY_FILE);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o750 });
  if (isFile(cert) && isFile(key)) {
    try {
      const certPem = readFileSync(cert, 'utf8');
      const x = new X509Certificate(certPem);
      const k = createPrivateKey(readFileSync(key));
      if (x.ca && x.checkPrivateKey(k) && Date.parse(x.validTo) - now.getTime() > CA_RENEW_BEFORE)
        return { cert, key, certPem, created: false };
    } catch {
      /* made again below */
    }
  }
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const der = certificate({
    cn: `codex-egress CA ${project}`.slice(0, 64),
    ca: true,
    publicKey: pair.publicKey,
    signingKey: pair.privateKey,
    notBefore: new Date(now.getTime() - DAY),
    notAfter: new Date(now.getTime() + CA_LIFETIME),
  });
  // key first, each written whole then renamed: a half-written pair is never read as a CA
  const certPem = toPem(der);
  writeNewFile(`${key}.tmp`, String(pair.privateKey.export({ type: 'pkcs8', format: 'pem' })), 0o640);
  renameSync(`${key}.tmp`, key);
  writeNewFile(`${cert}.tmp`, certPem, 0o644);
  renameSync(`${cert}.tmp`, cert);
  return { cert, key, certPem, created: true };
}

export class CaError extends Error {
  override readonly name = 'CaError';
  readonly code = 'ERR_CA';
}

/** Issues (and caches) the leaf certificate the gateway presents for a host. */
export class LeafIssuer {
  private readonly caKey: KeyObject;
  private readonly caPublic: KeyObject;
  private readonly caCn: string;
  private readonly caPem: string;
  private readonly cache = new Map<string, { context: tls.SecureContext; renewAt: number }>();

  constructor(certPem: string, keyPem: string) {
    let x: X509Certificate;
    try {
      x = new X509Certificate(certPem);
      this.caKey = createPrivateKey(keyPem);
    } catch (e) {
      throw new CaError(`the injection CA cannot be read: ${(e as Error).message}`);
    }
    if (!x.ca || !x.checkPrivateKey(this.caKey)) throw new CaError('the injection CA certificate is not a CA, or does not match its key');
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1];
    if (!cn) throw new CaError('the injection CA certificate has no common name');
    this.caCn = cn;
    this.caPublic = createPublicKey(this.caKey);
    this.caPem = certPem;
  }

  /** The TLS context for `host` (a validated, lower-case host name). */
  contextFor(host: string, now = Date.now()): tls.SecureContext {
    const hit = this.cache.get(host);
    if (hit && hit.renewAt > now) return hit.context;
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = certificate({
      cn: host.slice(0, 64),
      dnsNames: [host],
      ca: false,
      publicKey: pair.publicKey,
      signingKey: this.caKey,
      issuer: { cn: this.caCn, publicKey: this.caPublic },
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + LEAF_LIFETIME),
    });
    const context = tls.createSecureContext({
      key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: toPem(der) + this.caPem,
      minVersion: 'TLSv1.2',
    });
    this.cache.set(host, { context, renewAt: now + LEAF_LIFETIME / 2 });
    return context;
  }
}
