// Stand-in for the firewall's DNS → ipset bridge, run inside the benchmark namespace: how long it takes
// to get one answered address into a kernel set (timeout entries, as the firewall will use), three ways:
//   exec:        one `ipset -exist add` process per address
//   interactive: one long-lived `ipset -` process (stdout unbuffered with stdbuf); a command is done when
//                the next prompt arrives
//   restore:     a batch of addresses through one `ipset -exist restore` (cost per address)
// Usage: node dist/bench/ipsetbench.js '{"samples":500}'
import { execFile, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { summarize } from './stats.js';

const run = promisify(execFile);
const samples = (JSON.parse(process.argv[2] ?? '{}') as { samples?: number }).samples ?? 500;
const SET = 'bench_allow';
const ip = (i: number) => `203.0.${113 + ((i >> 8) & 0x3f)}.${i & 0xff}`;

async function main(): Promise<object> {
  await run('ipset', ['-exist', 'create', SET, 'hash:ip', 'family', 'inet', 'timeout', '3600', 'maxelem', '1000000']);
  try {
    const exec: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      await run('ipset', ['-exist', 'add', SET, ip(i), 'timeout', '60']);
      exec.push(performance.now() - t);
    }

    const child = spawn('stdbuf', ['-o0', 'ipset', '-'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    let waiter: (() => void) | undefined;
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ipset> ')) {
        out = out.slice(out.lastIndexOf('ipset> ') + 7);
        waiter?.();
      }
    });
    const prompt = () => new Promise<void>((r) => (waiter = r));
    await prompt();
    const interactive: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      const p = prompt();
      child.stdin.write(`add -exist ${SET} ${ip(samples + i)} timeout 60\n`);
      await p;
      interactive.push(performance.now() - t);
    }
    child.stdin.end('quit\n');
    await run('ipset', ['test', SET, ip(2 * samples - 1)]); // throws if the last one is not there

    const batch = 1000;
    let text = '';
    for (let i = 0; i < batch; i++) text += `add ${SET} ${ip(4 * samples + i)} timeout 60\n`;
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const r = spawn('ipset', ['-exist', 'restore'], { stdio: ['pipe', 'ignore', 'inherit'] });
      r.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ipset restore exited ${code}`))));
      r.stdin.end(text);
    });
    const restoreMs = performance.now() - t;
    return { exec: summarize(exec), interactive: summarize(interactive), restore: { batch, ms: restoreMs, perEntryMs: restoreMs / batch } };
  } finally {
    await run('ipset', ['destroy', SET]).catch(() => undefined);
  }
}

main().then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (err: Error) => {
    process.stderr.write(`ipsetbench: ${err.message}\n`);
    process.exit(1);
  },
);
