// A long-lived `ipset -` process for the allow set's adds and deletes. Spawning `ipset restore` for
// each batch cost 6–14 ms from the gateway (fork time grows with the gateway's memory); writing the same
// lines to a running ipset costs about 0.1 ms. Each batch is followed by a sentinel command whose answer
// comes after every message the batch caused, so the batch's errors are known exactly. ipset writes
// errors to stderr and (7.22) the `test` answer to a buffered stdout (7.17: stderr), so both go to one
// unbuffered pipe (`stdbuf -o0`, `2>&1`) where the kernel keeps them in order.
import { execa, type ResultPromise } from 'execa';
import { ALLOW_SET } from './rules.js';
import type { Exec } from './apply.js';

/** Never in the set (0.0.0.0/8 is rejected by the firewall and never served), so `test` says NOT. */
const SENTINEL_IP = '0.0.0.1';
const SENTINEL = new RegExp(`^${SENTINEL_IP.replace(/\./g, '\\.')} is NOT in set ${ALLOW_SET}\\.$`);

export class IpsetSession {
  private child?: ResultPromise<{ buffer: false; stdin: 'pipe'; stdout: 'pipe'; stderr: 'ignore'; reject: false }>;
  private pending?: { errors: string[]; resolve(): void; reject(err: Error): void; timer: NodeJS.Timeout };
  private tail: Promise<unknown> = Promise.resolve();

  /** `prefix` goes before the command (tests use `ip netns exec NS`). */
  constructor(
    private readonly prefix: readonly string[] = [],
    private readonly timeoutMs = 5_000,
  ) {}

  /** Run ipset commands (restore syntax, one per line); resolves once all ran, rejects with their errors. */
  run(script: string): Promise<void> {
    const p = this.tail.then(
      () => this.runNow(script),
      () => this.runNow(script),
    );
    this.tail = p.catch(() => undefined);
    return p;
  }

  close(): void {
    this.child?.kill();
    this.child = undefined;
  }

  private start() {
    const [cmd, ...args] = [...this.prefix, 'sh', '-c', 'exec stdbuf -o0 ipset - 2>&1'];
    const child = execa(cmd!, args, { buffer: false, stdin: 'pipe', stdout: 'pipe', stderr: 'ignore', reject: false });
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      // Interactive ipset prints a prompt ("ipset> ") before each command it reads.
      for (const line of lines) this.onLine(line.replace(/^(ipset> )+/, '').trim());
    });
    child.stdin.on('error', () => undefined);
    void child.then((r) => {
      if (this.child === child) this.child = undefined;
      this.fail(new Error(`ipset session ended (${r.exitCode ?? r.signal ?? 'unknown'})`));
    });
    this.child = child;
    return child;
  }

  private runNow(script: string): Promise<void> {
    const child = this.child ?? this.start();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new Error(`ipset did not answer in ${this.timeoutMs} ms`));
        this.close();
      }, this.timeoutMs);
      this.pending = { errors: [], resolve, reject, timer };
      child.stdin.write(`${script.endsWith('\n') || script === '' ? script : `${script}\n`}test ${ALLOW_SET} ${SENTINEL_IP}\n`);
    });
  }

  private onLine(line: string): void {
    const p = this.pending;
    if (!p || line === '') return;
    if (!SENTINEL.test(line)) {
      p.errors.push(line);
      return;
    }
    clearTimeout(p.timer);
    this.pending = undefined;
    if (p.errors.length) p.reject(new Error(p.errors.join('; ')));
    else p.resolve();
  }

  private fail(err: Error): void {
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = undefined;
    p.reject(err);
  }
}

/** An Exec that sends `ipset restore` input to the session and runs everything else with `fallback`. */
export function sessionExec(session: IpsetSession, fallback: Exec): Exec {
  return async (cmd, args, input) => {
    if (cmd === 'ipset' && args.length === 1 && args[0] === 'restore') {
      await session.run(input ?? '');
      return '';
    }
    return fallback(cmd, args, input);
  };
}
