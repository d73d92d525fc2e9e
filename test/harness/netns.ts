// Test harness: network namespaces and the processes run inside them, always removed on exit.
// Nothing here touches the machine's own (root) namespace: every address, route and rule lives in a
// namespace this harness created, and each namespace is deleted when the test ends, fails or is interrupted.
import { execa, execaSync, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

const live = new Set<Netns>();
const children = new Set<ResultPromise>();
let hooked = false;

function cleanupSync(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const ns of live) {
    try {
      execaSync('ip', ['netns', 'del', ns.name], { reject: false });
    } catch {
      /* best effort */
    }
  }
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.exit(130);
    });
  }
}

export interface Proc {
  child: ResultPromise;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolve when a line of output matches, or reject after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
  readonly exited: boolean;
}

export class Netns {
  private constructor(readonly name: string) {}

  /** A new namespace with loopback up and IPv6 disabled nowhere (callers decide). */
  static async create(prefix = 'ce'): Promise<Netns> {
    hookExit();
    const ns = new Netns(`${prefix}-${randomBytes(3).toString('hex')}`);
    await execa('ip', ['netns', 'add', ns.name]);
    live.add(ns);
    await ns.run('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Run a command inside the namespace and wait for it. */
  run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; reject?: boolean } = {}) {
    return execa('ip', ['netns', 'exec', this.name, cmd, ...args], {
      timeout: opts.timeoutMs ?? 30_000,
      input: opts.input,
      reject: opts.reject ?? true,
      all: true,
    });
  }

  /** Start a long-running process inside the namespace. */
  spawn(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
    const child = execa('ip', ['netns', 'exec', this.name, cmd, ...args], {
      reject: false,
      all: true,
      buffer: false,
      env,
      stdin: 'ignore',
    });
    children.add(child);
    let out = '';
    let exited = false;
    const waiters = new Set<() => void>();
    child.all?.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of waiters) w();
    });
    void child.finally(() => {
      exited = true;
      children.delete(child);
      for (const w of waiters) w();
    });
    return {
      child,
      output: () => out,
      get exited() {
        return exited;
      },
      waitFor(pattern, timeoutMs = 15_000) {
        return new Promise((resolve, reject) => {
          const check = () => {
            const m = pattern.exec(out);
            if (m) {
              done();
              resolve(m[0]);
            } else if (exited) {
              done();
              reject(new Error(`process exited before ${pattern}; output:\n${out}`));
            }
          };
          const timer = setTimeout(() => {
            done();
            reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`));
          }, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          check();
        });
      },
      async stop(signal = 'SIGTERM', timeoutMs = 5_000) {
        if (exited) return;
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await child;
        clearTimeout(t);
      },
    };
  }

  /** Add an address to the namespace's loopback (the kernel here has no dummy interfaces). */
  async addLoopbackAddress(cidr: string): Promise<void> {
    await this.run('ip', ['addr', 'add', cidr, 'dev', 'lo']);
  }

  async destroy(): Promise<void> {
    if (!live.has(this)) return;
    live.delete(this);
    // Processes started by this harness in the namespace are killed by their owners; anything left is killed here.
    const pids = await execa('ip', ['netns', 'pids', this.name], { reject: false });
    for (const pid of String(pids.stdout).split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await execa('ip', ['netns', 'del', this.name], { reject: false });
  }
}

/** Join two namespaces with a veth pair; returns the interface names. */
export async function link(a: Netns, aAddr: string, b: Netns, bAddr: string): Promise<{ aIf: string; bIf: string }> {
  const id = randomBytes(3).toString('hex');
  const aIf = `va${id}`;
  const bIf = `vb${id}`;
  await execa('ip', ['link', 'add', aIf, 'netns', a.name, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
  await a.run('ip', ['addr', 'add', aAddr, 'dev', aIf]);
  await b.run('ip', ['addr', 'add', bAddr, 'dev', bIf]);
  await a.run('ip', ['link', 'set', aIf, 'up']);
  await b.run('ip', ['link', 'set', bIf, 'up']);
  return { aIf, bIf };
}

export { once };
