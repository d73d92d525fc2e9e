// The gateway's credential injection from its files: the credentials, the CA (certificate and key) and
// the extra upstream trust. Any problem stops the gateway from starting (never a silent pass-through).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CA_CERT_FILE, CA_KEY_FILE, LeafIssuer } from './ca.js';
import { readCredentials, CredentialsError } from './credentials.js';
import type { InjectOptions } from './tunnel.js';

export interface InjectFiles {
  /** The credentials file (JSON, credentials.ts). */
  credentials: string;
  /** The directory holding ca.pem and ca-key.pem. */
  caDir: string;
  /** PEM certificates the gateway trusts for the real hosts besides the system roots. */
  upstreamCa?: string;
}

const read = (what: string, path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new CredentialsError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
};

export function loadInject(f: InjectFiles): InjectOptions {
  const credentials = readCredentials(f.credentials);
  const issuer = new LeafIssuer(read('the CA certificate', join(f.caDir, CA_CERT_FILE)), read('the CA key', join(f.caDir, CA_KEY_FILE)));
  const upstreamCa = f.upstreamCa ? read('the upstream CA file', f.upstreamCa) : undefined;
  // fail now, not at the first request, when a host's certificate cannot be made
  for (const c of credentials) issuer.contextFor(c.host);
  return { issuer, credentials, ...(upstreamCa ? { upstreamCa } : {}) };
}
