// Test harness: run the CLI in this process (fast: no node start per call), capturing what it prints,
// with CODEX_EGRESS_STATE_DIR pointed at the test's own state directory for the call.
import { main } from '../../cli/main.js';

export async function cliInProcess(args: string[], stateDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const write = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((c: string | Uint8Array) => ((stdout += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((stderr += String(c)), true)) as typeof process.stderr.write;
  const before = process.env.CODEX_EGRESS_STATE_DIR;
  process.env.CODEX_EGRESS_STATE_DIR = stateDir;
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
    if (before === undefined) delete process.env.CODEX_EGRESS_STATE_DIR;
    else process.env.CODEX_EGRESS_STATE_DIR = before;
  }
}
