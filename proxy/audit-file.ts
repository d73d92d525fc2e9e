// The audit log file, rotated by size: `audit.jsonl` is always the live file; when it reaches `maxBytes` it
// becomes `audit.jsonl.1` (the previous .1 becomes .2, …) and the oldest beyond `keep` is deleted. The
// live file keeps its path, so `tail -f`, the CLI and the test harness read it where they always did.
// (pino-roll numbers the live file itself — audit.N.log with a fixed `current.log` link per directory —
// which would move the documented path; see README: Audit log.)
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';

/** The path of the n-th rotated file (1 is the newest). */
export const rotatedPath = (path: string, n: number) => `${path}.${n}`;

export interface RotationOptions {
  /** Rotate when the live file reaches this many bytes. */
  maxBytes: number;
  /** Rotated files kept (audit.jsonl.1 … .keep). */
  keep: number;
}

export const ROTATION_DEFAULTS: RotationOptions = { maxBytes: 64 * 1024 * 1024, keep: 4 };

type Destination = ReturnType<typeof pino.destination>;

export class AuditFile {
  readonly dest: Destination;
  private size: number;
  private readonly onError: (err: Error) => void;

  constructor(
    readonly path: string,
    private readonly opts: RotationOptions = ROTATION_DEFAULTS,
    onError: (err: Error) => void = () => undefined,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.size = existsSync(path) ? statSync(path).size : 0;
    this.dest = pino.destination({ dest: path, sync: false, mkdir: true });
    this.dest.on('error', onError);
    this.onError = onError;
    // Bytes the file really received (buffered lines are not in it yet).
    this.dest.on('write', (n: number) => {
      this.size += n;
      if (this.size >= this.opts.maxBytes) this.rotate();
    });
    if (this.size >= opts.maxBytes) this.rotate();
  }

  private rotating = false;
  private closing = false;

  /** Write what is buffered and close the file; no rotation starts any more (one in flight finishes first). */
  end(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      const finish = () => {
        this.dest.once('close', () => resolve());
        this.dest.end();
      };
      if (this.rotating) this.dest.once('ready', finish);
      else finish();
    });
  }

  /**
   * Shift the history and reopen the live path. Lines still buffered go to the new file (order is kept
   * across the files); a write in flight finishes in the renamed one. One rotation at a time: the next
   * waits until the new file is open.
   */
  rotate(): void {
    if (this.rotating || this.closing) return;
    this.rotating = true;
    this.size = 0;
    try {
      rmSync(rotatedPath(this.path, this.opts.keep), { force: true });
      for (let n = this.opts.keep - 1; n >= 1; n--) {
        if (existsSync(rotatedPath(this.path, n))) renameSync(rotatedPath(this.path, n), rotatedPath(this.path, n + 1));
      }
      if (existsSync(this.path)) renameSync(this.path, rotatedPath(this.path, 1));
      this.dest.once('ready', () => {
        this.rotating = false;
        if (this.size >= this.opts.maxBytes) this.rotate();
      });
      this.dest.reopen();
    } catch (err) {
      this.rotating = false;
      this.onError(err as Error);
    }
  }
}
