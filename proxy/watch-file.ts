// Watching the allowlist file: one call of `onChange` per change of its content, however the change
// arrives. fs.watch on the directory reacts at once (an edit in place, an atomic replace by rename, a
// creation); a 1 s poll backs it up where events are not delivered (some bind mounts and network file
// systems). Both only ask "did the content change?": the checks run one at a time and compare a hash of
// the bytes, so an edit seen by the watcher and by the poll, or a rename that rewrote the same bytes,
// is one reload (or none), never two. (SIGHUP is the way to reload without a change.)
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, basename } from 'node:path';

export interface WatchOptions {
  /** The backing poll's period (ms). */
  pollMs?: number;
  /** How long the watcher waits for a burst of events to end (ms). */
  debounceMs?: number;
}

/** What the file holds now: a hash of its bytes, or "missing". */
async function signature(path: string): Promise<string> {
  const bytes = await readFile(path).catch(() => undefined);
  return bytes ? createHash('sha256').update(bytes).digest('hex') : 'missing';
}

/** Call `onChange` when the file's content changes (created and removed included). Returns stop(). */
export function watchFile(path: string, onChange: () => void, opts: WatchOptions = {}): () => void {
  const pollMs = opts.pollMs ?? 1000;
  const debounceMs = opts.debounceMs ?? 50;
  let last: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  // One check at a time: two overlapping checks would both see the old signature and both fire.
  let checking: Promise<void> = Promise.resolve();
  const check = () =>
    (checking = checking.then(async () => {
      const sig = await signature(path);
      if (stopped) return;
      const first = last === undefined;
      const changed = sig !== last;
      last = sig;
      if (!first && changed) onChange();
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
  return () => {
    stopped = true;
    watcher?.close();
    clearInterval(poll);
    clearTimeout(timer);
  };
}
