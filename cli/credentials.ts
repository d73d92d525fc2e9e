// The credentials step of `up`/`exec` (README: Credentials): decide the model, resolve the secrets, write
// what the gateway and the sandbox get. And the keys `docker exec` may give Codex: only a sandbox made
// with `--credentials mount` gets the real ones.
import { existsSync } from 'node:fs';
import { UsageError } from './args.js';
import { err } from './common.js';
import { apiKeyEnv, type Mount } from '../image/args.js';
import {
  credentialPaths,
  planCredentials,
  readAuthKind,
  removeInjection,
  runningMode,
  writeInjection,
  CREDENTIALS_MODES,
  CredentialsPlanError,
  type CredentialPlan,
  type CredentialsMode,
  type ResolvedMode,
} from '../image/credentials.js';
import { CredentialsError } from '../proxy/inject/credentials.js';
import { CaError } from '../proxy/inject/ca.js';
import { isWithin, UnsafePathError } from '../image/paths.js';
import type { Project } from '../image/names.js';
import type { StatePaths } from '../image/project.js';
import { resolveSecrets } from './secret.js';

export const CREDENTIALS_HELP = `  --credentials MODE      inject (the gateway holds the API key, the sandbox a sentinel), mount (auth.json
                          and the keys in the sandbox), none, or auto (default: inject when an API key is
                          available, mount for a ChatGPT sign-in). README: Credentials
  --upstream-ca FILE      PEM certificates the gateway trusts for injected hosts besides the system roots`;

export const CREDENTIALS_OPTIONS = {
  credentials: { type: 'string' },
  'upstream-ca': { type: 'string' },
} as const;

export interface PreparedCredentials {
  plan: CredentialPlan;
  gatewayArgs: string[];
  mount?: Mount;
}

export async function prepareCredentials(
  v: { credentials?: string; 'upstream-ca'?: string },
  p: Project,
  paths: StatePaths,
  authFile: string | undefined,
  otherMounts: Mount[],
): Promise<PreparedCredentials> {
  const requested = (v.credentials ?? 'auto') as CredentialsMode;
  if (!CREDENTIALS_MODES.includes(requested))
    throw new UsageError(`--credentials ${v.credentials}: one of ${CREDENTIALS_MODES.join(', ')}`);
  if (v['upstream-ca'] && !existsSync(v['upstream-ca'])) throw new UsageError(`--upstream-ca ${v['upstream-ca']} does not exist`);
  const c = credentialPaths(paths);
  // nothing the sandbox is given may show the gateway's credentials directory (or the secrets file)
  for (const m of otherMounts) {
    for (const secret of [c.dir, c.secrets]) {
      if (isWithin(secret, m.host) || isWithin(m.host, secret))
        throw new UsageError(`${m.host} would show the gateway's credentials (${secret}) to the sandbox: refused`);
    }
  }
  try {
    const secrets = requested === 'none' ? [] : await resolveSecrets(c.secrets);
    const plan = planCredentials({ requested, env: process.env, auth: readAuthKind(authFile), secrets });
    const w = await writeInjection(c, paths.dir, p, plan, v['upstream-ca']);
    return { plan, ...w };
  } catch (e) {
    if (e instanceof CredentialsPlanError || e instanceof CredentialsError || e instanceof CaError || e instanceof UnsafePathError)
      throw new UsageError(e.message);
    throw e;
  }
}

/** The real values leave the disk when the appliance goes down. */
export function forgetCredentials(paths: StatePaths): void {
  removeInjection(credentialPaths(paths));
}

/**
 * API keys for Codex at `docker exec`: the real ones only for a sandbox made with --credentials mount
 * (`made`: the model this command just made it with; else the running sandbox's label says).
 */
export async function keyEnvFor(p: Project, made?: ResolvedMode): Promise<{ names: string[]; env: Record<string, string> }> {
  const mode = made ?? (await runningMode(p));
  if (mode !== 'mount') {
    if (!made && apiKeyEnv(process.env).names.length) {
      err(
        `codex-egress: note: the running sandbox was made with --credentials ${mode ?? '?'}: the API key set here is not given to it (${mode === 'inject' ? 'the gateway holds the key it was started with' : 'run "codex-egress down", then up again'})`,
      );
    }
    return { names: [], env: {} };
  }
  const k = apiKeyEnv(process.env);
  return { names: k.names, env: k.values };
}
