// One image build or removal at a time on this machine. The Docker e2e files run two at a time (tap
// jobs: 2) and Docker 20.10's legacy builder races with a concurrent `rmi -f` (seen in CI: "failed to
// get digest sha256:…: no such file or directory" in the middle of a build while another file removed its
// images). The lock is a directory (mkdir is atomic) holding the owner's pid; one left by a dead process
// is taken over. Waiting is bounded.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const IMAGE_LOCK = join(tmpdir(), 'codex-egress-test-image.lock');

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

function tryTake(dir: string): boolean {
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {
      // being created right now, or left empty by a process killed between mkdir and write: the age decides
    }
    if (Number.isInteger(owner) && owner > 0 ? alive(owner) : Date.now() - madeAt(dir) < 10_000) return false;
    rmSync(dir, { recursive: true, force: true });
    return tryTake(dir);
  }
  writeFileSync(join(dir, 'pid'), String(process.pid));
  return true;
}

/** When the lock directory was made (now, if it is gone already: the next try decides). */
function madeAt(dir: string): number {
  try {
    return statSync(dir).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** Run `fn` holding the machine's image lock; waits up to `waitMs` for it (then throws). */
export async function withImageLock<T>(fn: () => Promise<T>, waitMs = 20 * 60_000, dir = IMAGE_LOCK): Promise<T> {
  const until = Date.now() + waitMs;
  while (!tryTake(dir)) {
    if (Date.now() > until) throw new Error(`waited ${waitMs} ms for the image lock ${dir}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  try {
    return await fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
