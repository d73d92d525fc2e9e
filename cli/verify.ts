// `codex-egress verify`: the probe set, run from inside the sandbox.
import { parse } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, gatewayRunning, notRunning } from './common.js';
import { verify, firstAllowedHost, codexMode } from '../image/appliance.js';
import { printProbes } from './up.js';
import { liveProject } from '../image/subnet.js';

export const VERIFY_USAGE = `Usage: codex-egress verify [options]

Runs the probes from inside the sandbox: the gateway is healthy; an allowed host resolves and is
reachable through the proxy; a denied host neither resolves nor connects; IP literals are refused and
unreachable directly; direct DNS to outside resolvers gets no answer; no IPv6; no LAN (10/8, 172.16/12,
192.168/16); no cloud metadata (169.254.169.254); no host bridge (the internal bridge, docker0).
Then says which Codex sandbox mode is in force and which user the sandbox runs as (MODE line).

Options:
${WORKDIR_HELP}
  --verify-host NAME      the allowed host to reach (default: the first exact rule of the allowlist)
  --json                  print as JSON: { ok, probes: [{ id, ok, detail }], codexSandbox, sandboxUser }
  -h, --help              this help

Exit codes: 0 every probe passed; 1 error; 2 usage; 3 a probe failed; 4 not running.`;

export async function verifyCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...workdirOptions, 'verify-host': { type: 'string' }, json: { type: 'boolean' } });
  const { project, paths } = projectFrom(v);
  if (!(await gatewayRunning(project))) return notRunning(project);
  const p = await liveProject(project);
  const results = await verify(p, { allowedHost: v['verify-host'] ?? (await firstAllowedHost(paths.effective)) });
  printProbes(results, !!v.json, await codexMode(p));
  return results.every((r) => r.ok) ? EXIT.ok : EXIT.probeFailed;
}
