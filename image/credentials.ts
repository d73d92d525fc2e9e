// Where the sandbox's credentials come from, and what it holds instead (README: Credentials). With
// `inject` (the default when an API key is available) the real values go to the gateway only, in the
// project's state directory (outside the workdir, never mounted into the sandbox); the sandbox gets the
// sentinel and the project CA's certificate. `mount` is the old model (auth.json mounted read-only, the
// keys in Codex's environment): the only one for a ChatGPT sign-in. The plan is pure; the file writing
// and the docker label read are at the bottom.
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCa, writeNewFile } from '../proxy/inject/ca.js';
import { chmodDirNoFollow, mkdirNoFollow } from './paths.js';
import { credentialsFileSchema, SENTINEL, type CredentialInput } from '../proxy/inject/credentials.js';
import { CREDENTIALS_LABEL, type Mount } from './args.js';
import { GATEWAY_ALLOWLIST_DIR } from '../proxy/endpoints.js';
import { dockerResult } from './docker.js';
import type { Project } from './names.js';
import type { StatePaths } from './project.js';

export const CREDENTIALS_MODES = ['auto', 'inject', 'mount', 'none'] as const;
export type CredentialsMode = (typeof CREDENTIALS_MODES)[number];
export type ResolvedMode = Exclude<CredentialsMode, 'auto'>;

/** The provider's API host whose Authorization header carries the OpenAI key. */
export const OPENAI_API_HOST = 'api.openai.com';
/** Where the sandbox finds the project CA's certificate (read-only). */
export const SANDBOX_CA_PATH = '/opt/codex-egress/ca.pem';
/** The system trust store of the sandbox image (Debian), which the CA is appended to at start. */
export const SANDBOX_SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** The host paths of the injection, all in the project's state directory. */
export function credentialPaths(paths: StatePaths) {
  const dir = join(paths.dir, 'credentials');
  return {
    /** The gateway's: credentials.json (real values, 0640), ca/ (its key), upstream-ca.pem. */
    dir,
    file: join(dir, 'credentials.json'),
    caDir: join(dir, 'ca'),
    upstreamCa: join(dir, 'upstream-ca.pem'),
    /** The sandbox's read-only view: the CA certificate only. */
    trustDir: join(paths.dir, 'trust'),
    trustCert: join(paths.dir, 'trust', 'ca.pem'),
    /**
     * `codex-egress secret set`: the configured secrets (host-only, 0600). Beside the project's state
     * directory, not in it: the gateway has that directory read-write, and the host runs these commands.
     */
    secrets: `${paths.dir}.secrets.json`,
  };
}
export type CredentialPaths = ReturnType<typeof credentialPaths>;

/** The same paths as the gateway sees them (the state directory is its /etc/codex). */
export const GATEWAY_CREDENTIALS = {
  file: `${GATEWAY_ALLOWLIST_DIR}/credentials/credentials.json`,
  caDir: `${GATEWAY_ALLOWLIST_DIR}/credentials/ca`,
  upstreamCa: `${GATEWAY_ALLOWLIST_DIR}/credentials/upstream-ca.pem`,
};

/** What an auth.json holds, as far as the model goes. Never returns a token, only the API key. */
export type AuthKind = { kind: 'apikey'; key: string } | { kind: 'chatgpt' } | { kind: 'unreadable'; detail: string };

/** Read an auth.json (Codex's login file): an API key (OPENAI_API_KEY), or ChatGPT tokens. Pure on the text. */
export function authKind(text: string): AuthKind {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error('not an object');
  } catch (e) {
    return { kind: 'unreadable', detail: `not JSON (${(e as Error).message.slice(0, 80)})` };
  }
  const key = j.OPENAI_API_KEY;
  const mode = typeof j.auth_mode === 'string' ? j.auth_mode.toLowerCase() : undefined;
  const hasTokens = !!j.tokens && typeof j.tokens === 'object';
  // Codex uses the key when auth_mode says apikey, or when there are no tokens
  if (typeof key === 'string' && key.trim() && (mode === 'apikey' || !hasTokens)) return { kind: 'apikey', key: key.trim() };
  if (hasTokens) return { kind: 'chatgpt' };
  return { kind: 'unreadable', detail: 'neither OPENAI_API_KEY nor tokens' };
}

/** A secret from `codex-egress secret set`, its value resolved on the host at `up`. */
export interface ResolvedSecret {
  credential: CredentialInput;
  /** A variable the sandbox gets holding the sentinel (e.g. GH_TOKEN), if any. */
  env?: string;
}

export interface CredentialPlan {
  mode: ResolvedMode;
  /** For the gateway (real values). Empty: no injection. */
  credentials: CredentialInput[];
  /** The sandbox container's environment: sentinels and the CA variables (no real value). */
  sandboxEnv: Record<string, string>;
  /** Mount auth.json read-only into the sandbox (mount mode only). */
  mountAuthFile: boolean;
  /** Give the real API keys to Codex's environment at `docker exec` (mount mode only). */
  passKeys: boolean;
  notes: string[];
}

export class CredentialsPlanError extends Error {
  override readonly name = 'CredentialsPlanError';
}

/** The environment that makes every usual client in the sandbox trust the project CA. */
export function trustEnv(): Record<string, string> {
  return {
    CODEX_CA_CERTIFICATE: SANDBOX_CA_PATH,
    NODE_EXTRA_CA_CERTS: SANDBOX_CA_PATH,
    SSL_CERT_FILE: SANDBOX_SYSTEM_BUNDLE,
    REQUESTS_CA_BUNDLE: SANDBOX_SYSTEM_BUNDLE,
    CURL_CA_BUNDLE: SANDBOX_SYSTEM_BUNDLE,
    GIT_SSL_CAINFO: SANDBOX_SYSTEM_BUNDLE,
  };
}

/**
 * Decide the model. `auto`: inject when an API key is available (host CODEX_API_KEY / OPENAI_API_KEY, or
 * an API-key auth.json); mount for a ChatGPT sign-in or any other auth.json (the tokens cannot be held
 * by the gateway yet: README); none otherwise. Secrets are injected in every mode but `none`. Pure.
 */
export function planCredentials(o: {
  requested: CredentialsMode;
  env: NodeJS.ProcessEnv;
  auth?: AuthKind;
  secrets: ResolvedSecret[];
}): CredentialPlan {
  const envKey = o.env.CODEX_API_KEY || o.env.OPENAI_API_KEY || undefined;
  const fileKey = o.auth?.kind === 'apikey' ? o.auth.key : undefined;
  const key = envKey ?? fileKey;
  const notes: string[] = [];
  let mode: ResolvedMode;
  // auto: only an API key moves to the gateway; any other auth.json (ChatGPT tokens, a kind this version
  // does not know) is mounted as before
  if (o.requested === 'auto') mode = key ? 'inject' : o.auth ? 'mount' : o.secrets.length ? 'inject' : 'none';
  else mode = o.requested;
  if (mode === 'inject' && !key && !o.secrets.length) {
    throw new CredentialsPlanError(
      o.auth?.kind === 'chatgpt'
        ? '--credentials inject: a ChatGPT sign-in cannot be injected (README: Credentials); set CODEX_API_KEY, or use --credentials mount'
        : '--credentials inject: no API key (CODEX_API_KEY, OPENAI_API_KEY or an API-key auth.json) and no secret to inject',
    );
  }
  if (o.auth?.kind === 'unreadable' && mode !== 'none') notes.push(`auth.json: ${o.auth.detail}`);
  if (mode === 'none') return { mode, credentials: [], sandboxEnv: {}, mountAuthFile: false, passKeys: false, notes };
  const credentials: CredentialInput[] = [];
  const sandboxEnv: Record<string, string> = {};
  if (mode === 'inject' && key) {
    credentials.push({ name: 'openai', host: OPENAI_API_HOST, value: key });
    sandboxEnv.CODEX_API_KEY = SENTINEL;
    sandboxEnv.OPENAI_API_KEY = SENTINEL;
    notes.push(
      `the OpenAI key (from ${envKey ? (o.env.CODEX_API_KEY ? 'CODEX_API_KEY' : 'OPENAI_API_KEY') : 'auth.json'}) is held by the gateway; the sandbox has the sentinel`,
    );
  }
  if (mode === 'mount')
    notes.push(
      o.auth && o.auth.kind !== 'apikey'
        ? 'auth.json (not an API key: a ChatGPT sign-in?) is mounted read-only into the sandbox: its tokens are readable there (README: Credentials)'
        : 'credentials mounted/passed into the sandbox (--credentials mount)',
    );
  for (const s of o.secrets) {
    credentials.push(s.credential);
    if (s.env) sandboxEnv[s.env] = SENTINEL;
  }
  if (credentials.length) Object.assign(sandboxEnv, trustEnv());
  return { mode, credentials, sandboxEnv, mountAuthFile: mode === 'mount', passKeys: mode === 'mount', notes };
}

/**
 * Write what the gateway and the sandbox get: the CA (made once), credentials.json (0640: the gateway reads
 * it through the user's group), the sandbox's copy of the CA certificate, the upstream CA if given.
 * Returns the gateway's extra arguments and the sandbox's mount; nothing when there is nothing to inject.
 */
export async function writeInjection(
  c: CredentialPaths,
  stateDir: string,
  project: Project,
  plan: CredentialPlan,
  upstreamCa?: string,
): Promise<{ gatewayArgs: string[]; mount?: Mount }> {
  removeInjection(c);
  if (!plan.credentials.length) return { gatewayArgs: [] };
  const parsed = credentialsFileSchema.safeParse({ v: 1, credentials: plan.credentials });
  if (!parsed.success)
    throw new CredentialsPlanError(`credentials: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  // The gateway has the state directory read-write: nothing below it is written through a link.
  for (const [d, mode] of [
    [c.dir, 0o750],
    [c.caDir, 0o750],
    [c.trustDir, 0o755],
  ] as const) {
    await mkdirNoFollow(d, stateDir, mode);
    await chmodDirNoFollow(d, mode);
  }
  const ca = ensureCa(c.caDir, project.name);
  const tmp = `${c.file}.${process.pid}.tmp`;
  writeNewFile(tmp, JSON.stringify({ v: 1, credentials: plan.credentials }), 0o640);
  renameSync(tmp, c.file);
  if (upstreamCa) writeNewFile(c.upstreamCa, readFileSync(upstreamCa, 'utf8'), 0o644);
  // the bytes checked or made by ensureCa, not the file (which could be replaced in between)
  writeNewFile(c.trustCert, ca.certPem, 0o644);
  return {
    gatewayArgs: [
      '--credentials',
      GATEWAY_CREDENTIALS.file,
      '--ca-dir',
      GATEWAY_CREDENTIALS.caDir,
      ...(upstreamCa ? ['--upstream-ca', GATEWAY_CREDENTIALS.upstreamCa] : []),
    ],
    mount: { host: c.trustCert, container: SANDBOX_CA_PATH, readOnly: true },
  };
}

/** Remove the real values from disk (at `down`, and before every `up`). The CA stays. */
export function removeInjection(c: CredentialPaths): void {
  rmSync(c.file, { force: true });
  rmSync(c.upstreamCa, { force: true });
}

/** Append the CA to the sandbox's system store (as root without capabilities, from /). */
export function sandboxTrustArgs(p: Project): string[] {
  return [
    'exec',
    '-u',
    '0:0',
    '-w',
    '/',
    p.sandbox,
    'sh',
    '-c',
    `mkdir -p /etc/ssl/certs && cat ${SANDBOX_CA_PATH} >> ${SANDBOX_SYSTEM_BUNDLE}`,
  ];
}

/**
 * The credentials model of the running sandbox (its label). A sandbox without the label was made before
 * injection existed: it was given the keys (mount).
 */
export async function runningMode(p: Project): Promise<ResolvedMode | undefined> {
  const r = await dockerResult(['inspect', '--format', `{{index .Config.Labels "${CREDENTIALS_LABEL}"}}`, p.sandbox], {
    timeoutMs: 30_000,
  });
  if (r.exitCode !== 0) return undefined;
  const m = r.stdout.trim();
  return m === 'inject' || m === 'none' || m === 'mount' ? m : 'mount';
}

/** Read auth.json for the plan; a file that cannot be read is said, not fatal. */
export function readAuthKind(file: string | undefined): AuthKind | undefined {
  if (!file || !existsSync(file)) return undefined;
  try {
    return authKind(readFileSync(file, 'utf8'));
  } catch (e) {
    return { kind: 'unreadable', detail: (e as NodeJS.ErrnoException).code ?? 'unreadable' };
  }
}
