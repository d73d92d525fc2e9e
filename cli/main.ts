// codex-egress: one file per command; this one only dispatches.
import { createRequire } from 'node:module';
import { gatewayCommand, GATEWAY_USAGE } from './gateway.js';
import { failureOf } from './errors.js';
import { firewallFactory } from '../firewall/index.js';
import { upCommand, UP_USAGE } from './up.js';
import { downCommand, DOWN_USAGE } from './down.js';
import { statusCommand, STATUS_USAGE } from './status.js';
import { allowCommand, denyCommand, ALLOW_USAGE, DENY_USAGE } from './allow.js';
import { domainsCommand, DOMAINS_USAGE } from './domains.js';
import { logsCommand, LOGS_USAGE } from './logs.js';
import { verifyCommand, VERIFY_USAGE } from './verify.js';
import { doctorCommand, DOCTOR_USAGE } from './doctor.js';
import { execCommand, EXEC_USAGE } from './exec.js';
import { buildCommand, BUILD_USAGE } from './build.js';
import { suggestCommand, SUGGEST_USAGE } from './suggest.js';
import { secretCommand, SECRET_USAGE } from './secret.js';
import { loginRun, LOGIN_USAGE } from './login.js';

const USAGE = `Usage: codex-egress <command> [options]

Commands:
  up          start the appliance for this project (gateway, sandbox), verify it, run Codex
  exec        run "codex exec PROMPT" in the appliance; writes run.log and exit.json
  down        remove the project's containers and networks
  status      containers, health, allowlist size, decision counters, file locations
  allow       allow rules (persisted to allowed_domains.txt, applied live)
  deny        deny rules (persisted, applied live)
  domains     the effective allowlist with provenance
  logs        the audit log (-f to follow, -n N, --denied, --since, --json; "logs summary")
  suggest     learning mode: the refused names as proposed allow rules, with counts
  verify      run the egress probes from inside the sandbox
  doctor      check Docker, the engine, the images, iptables/ipset in the gateway
  build       build the gateway and sandbox images
  secret      credentials for other hosts, injected by the gateway (set, list, rm)
  login       Codex's own login (device code) in the sandbox, into --codex-home DIR
  gateway     run the egress gateway (DNS resolver, HTTP/CONNECT proxy, firewall, audit log)

Exit codes: 0 ok; 1 failure; 2 bad usage; 3 a verify probe failed; 4 not running. "up" and "exec"
return Codex's exit code once Codex ran.

Run "codex-egress <command> --help" for a command's options.`;

type Command = { run: (argv: string[]) => Promise<number>; usage: string };
const COMMANDS: Record<string, Command> = {
  up: { run: upCommand, usage: UP_USAGE },
  exec: { run: execCommand, usage: EXEC_USAGE },
  down: { run: downCommand, usage: DOWN_USAGE },
  status: { run: statusCommand, usage: STATUS_USAGE },
  allow: { run: allowCommand, usage: ALLOW_USAGE },
  deny: { run: denyCommand, usage: DENY_USAGE },
  domains: { run: domainsCommand, usage: DOMAINS_USAGE },
  logs: { run: logsCommand, usage: LOGS_USAGE },
  suggest: { run: suggestCommand, usage: SUGGEST_USAGE },
  verify: { run: verifyCommand, usage: VERIFY_USAGE },
  doctor: { run: doctorCommand, usage: DOCTOR_USAGE },
  build: { run: buildCommand, usage: BUILD_USAGE },
  secret: { run: secretCommand, usage: SECRET_USAGE },
  login: { run: loginRun, usage: LOGIN_USAGE },
  gateway: { run: (argv) => gatewayCommand(argv, firewallFactory()), usage: GATEWAY_USAGE },
};

function onStdoutError(e: NodeJS.ErrnoException): void {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
}

/** Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  // `codex-egress logs | head`: a closed pipe ends the command quietly.
  if (!process.stdout.listeners('error').includes(onStdoutError)) process.stdout.on('error', onStdoutError);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`codex-egress: unknown command "${name}" (see "codex-egress --help")\n`);
    return 2;
  }
  // --help is the command's own only before "--": after it, everything is for Codex (up -- --help).
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    // Every error: one line and an exit code (cli/errors.ts); the stack only when asked for.
    const f = failureOf(name, err);
    process.stderr.write(`${f.line}\n`);
    if (process.env.CODEX_EGRESS_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return f.code;
  }
}
