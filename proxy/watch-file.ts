// Watching the allowlist file: one call of `onChange` per change of its content, however the change
// arrives. fs.watch on the directory reacts at once (an edit in place, an atomic replace by rename, a
// creation); a 1 s poll backs it up where events are not delivered (some bind mounts and network file
// systems). Both only ask "did the content change?": the checks run one at a time and compare a hash of
// the bytes, so an edit seen by the watcher and by the poll, or a rename that rewrote the same bytes,
// is one reload (or none), never two. (SIGHUP is the way to reload without a change.) `onChange` gets
// the very bytes that were hashed, and the reload parses those: a file caught half-written by one read
// and whole by the next is loaded as read, then reloaded once whole (ATTACK16: a reload that read the
// file again could load a torn copy while the watcher, having hashed the whole one, saw no change after).
import { constants, watch, type FSWatcher } from 'node:fs';
import { lstat, open, stat, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, basename } from 'node:path';

export interface WatchOptions {
  /** The backing poll's period (ms). */
  pollMs?: number;
  /** How long the watcher waits for a burst of events to end (ms). */
  debounceMs?: number;
}

/** A file as read once: its bytes, missing, or why it could not be read. */
export type FileRead = { bytes: Buffer } | { missing: true } | { error: Error };

/** The largest allowlist file read (a rule is a line of at most a few hundred bytes). */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * Read `path` once, never blocking: it must be a regular file (a FIFO put in its place would block the
 * read, and every check after it, for good; a device could be read without end: ATTACK17) of at most
 * MAX_FILE_BYTES. Anything else is an error, and the rules in force stay.
 */
export async function readOnce(path: string): Promise<FileRead> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) return { error: new Error(`${path} is not a regular file`) };
    if (st.size > MAX_FILE_BYTES) return { error: new Error(`${path} is larger than ${MAX_FILE_BYTES} bytes`) };
    const bytes = await fh.readFile();
    if (bytes.length > MAX_FILE_BYTES) return { error: new Error(`${path} is larger than ${MAX_FILE_BYTES} bytes`) };
    return { bytes };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { error: err as Error };
    // Missing only if nothing is at the path and its directory is there: a link whose target is gone
    // (at the file or a directory above it) is an error, not "no rules", which would drop the file's deny
    // rules (ATTACK19, ATTACK20).
    const atPath = await lstat(path).then(
      () => 'something',
      (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? 'nothing' : 'unknown'),
    );
    if (atPath !== 'nothing') return { error: new Error(`${path} cannot be read (a link to nothing?)`) };
    const dirThere = await stat(dirname(path)).then(
      (st) => st.isDirectory(),
      () => false,
    );
    return dirThere ? { missing: true } : { error: new Error(`${dirname(path)} is not a directory that exists`) };
  } finally {
    await fh?.close();
  }
}

/** What a read found: a hash of the bytes, "missing", or the error's code. */
function signature(r: FileRead): string {
  if ('bytes' in r) return createHash('sha256').update(r.bytes).digest('hex');
  return 'missing' in r ? 'missing' : `error ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`;
}

export interface FileWatch {
  stop(): void;
  /** What is in force now was loaded from `r` (a reload the watcher did not start): changes count from it. */
  loaded(r: FileRead): void;
}

/**
 * Call `onChange` with what the file holds whenever that changes (created and removed included).
 * `initial`: what is in force at the start (otherwise the first read is).
 */
export function watchFile(path: string, onChange: (r: FileRead) => void, opts: WatchOptions & { initial?: FileRead } = {}): FileWatch {
  const pollMs = opts.pollMs ?? 1000;
  const debounceMs = opts.debounceMs ?? 50;
  let last: string | undefined = opts.initial && signature(opts.initial);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  // One check at a time: two overlapping checks would both see the old signature and both fire.
  let checking: Promise<void> = Promise.resolve();
  const check = () =>
    (checking = checking.then(async () => {
      const r = await readOnce(path);
      if (stopped) return;
      const sig = signature(r);
      const first = last === undefined;
      const changed = sig !== last;
      last = sig;
      if (!first && changed) onChange(r);
    }));
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void check(), debounceMs);
  };
  void check();
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), (_event, file) => {
      if (!file || file.toString() === basename(path)) debounced();
    });
    watcher.on('error', () => undefined);
  } catch {
    // The directory may not exist yet: the poll still notices the file when it appears.
  }
  const poll = setInterval(() => void check(), pollMs);
  poll.unref();
  return {
    stop: () => {
      stopped = true;
      watcher?.close();
      clearInterval(poll);
      clearTimeout(timer);
    },
    loaded: (r) => void (last = signature(r)),
  };
}
