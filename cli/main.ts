// codex-egress: one file per command; this one only dispatches.
import { createRequire } from 'node:module';
import { gatewayCommand, GATEWAY_USAGE } from './gateway.js';
import { UsageError } from './args.js';
import { firewallFactory } from '../firewall/index.js';

const USAGE = `Usage: codex-egress <command> [options]

Commands:
  gateway     run the egress gateway (DNS resolver, HTTP/CONNECT proxy, firewall, audit log)

Run "codex-egress <command> --help" for a command's options.`;

type Command = { run: (argv: string[]) => Promise<number>; usage: string };
const COMMANDS: Record<string, Command> = {
  gateway: { run: (argv) => gatewayCommand(argv, firewallFactory()), usage: GATEWAY_USAGE },
};

/** Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
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
    process.stderr.write(`codex-egress: unknown command "${name}"\n\n${USAGE}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`codex-egress ${name}: ${err.message}\n\n${cmd.usage}\n`);
      return 2;
    }
    throw err;
  }
}
