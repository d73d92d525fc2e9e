// `codex-egress login --codex-home DIR`: Codex's own login (device-code flow) in the sandbox, through the
// gateway, leaving auth.json in DIR, so a worker (`exec --codex-home DIR`) never needs ~/.codex.
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, UsageError } from './args.js';
import { EXIT, projectFrom, gatewayRunning, guarded, err } from './common.js';
import { bringUp, APPLIANCE_OPTIONS, APPLIANCE_HELP } from './up.js';
import { down } from '../image/appliance.js';
import { sandboxExecArgs } from '../image/args.js';
import { dockerInherit } from '../image/docker.js';

export const LOGIN_USAGE = `Usage: codex-egress login --codex-home DIR [options]

Brings the appliance up with DIR as the Codex home, runs Codex's own login there ("codex login
--device-auth": open the URL it prints on any device and enter the code), through the gateway (the
default rules allow auth.openai.com), leaves auth.json in DIR and takes the appliance down. Then
"codex-egress exec --codex-home DIR ..." uses that login. DIR is kept; it holds a credential: keep
it out of version control (e.g. .codex-bot/ in .gitignore).

Options:
${APPLIANCE_HELP}
  -- ARGS                 more arguments for "codex login" (e.g. -- --with-api-key)
  -h, --help              this help

Exit codes: 0 logged in (auth.json in DIR); 1 error or no auth.json; 2 usage; 3 a probe failed.`;

/** The login command run in the sandbox. */
export const loginCommand = (extra: string[]) => ['codex', 'login', '--device-auth', ...extra];

export async function loginRun(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv, APPLIANCE_OPTIONS, true);
  if (!v['codex-home']) throw new UsageError('--codex-home DIR is required: the directory auth.json is left in');
  if (v.detach) throw new UsageError("--detach: login takes the appliance down when Codex's login ends");
  // A running appliance may have another Codex home mounted: its login would land there.
  if (await gatewayRunning(projectFrom(v).project)) {
    err(
      'codex-egress login: the appliance is running for this project: run "codex-egress down" first (login starts its own, with --codex-home mounted)',
    );
    return EXIT.error;
  }
  const r = await bringUp(v);
  if (typeof r === 'number') return r;
  const { project: p, paths } = r;
  const tty = !!process.stdin.isTTY && !!process.stdout.isTTY;
  let code = EXIT.error as number;
  await guarded(
    p,
    async () => {
      code = await dockerInherit(sandboxExecArgs(p, loginCommand(positionals), { tty, stdin: true }));
    },
    () => down(p, (s) => err(`codex-egress: ${s}`)),
  );
  // Only looked at (lstat), never read or followed: the sandbox could have left anything there.
  const st = await lstat(join(paths.codexHome, 'auth.json')).catch(() => undefined);
  if (code === 0 && st?.isFile() && st.size > 0) {
    err(`codex-egress: logged in: auth.json is in ${paths.codexHome} (use it with --codex-home ${paths.codexHome})`);
    return EXIT.ok;
  }
  err(
    `codex-egress login: ${code !== 0 ? `codex login exited ${code}` : 'codex login ended'} and ${st?.isFile() && st.size > 0 ? 'left' : 'left no'} auth.json in ${paths.codexHome}`,
  );
  return code !== 0 ? code : EXIT.error;
}
