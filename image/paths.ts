// Host paths the sandbox may have touched. The sandbox has the workdir (and its Codex home, and a
// --sessions-path) read-write, so anything below those can be swapped for a symbolic link at any time.
// Every path the host reads, mounts or writes is resolved here, component by component, refusing a link
// that lies inside such a directory; what the host creates there is created without following links.
import { lstatSync, readlinkSync, realpathSync, constants as fsc } from 'node:fs';
import { lstat, mkdir, open, readdir, lchown, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';

export class UnsafePathError extends Error {
  override readonly name = 'UnsafePathError';
  readonly code = 'ERR_UNSAFE_PATH';
}

/** Is path at or below dir? Both absolute and normalised. */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

/** The real path of each root that exists (a root that does not exist yet cannot hold a link). */
export function realRoots(roots: string[]): string[] {
  const out: string[] = [];
  for (const r of roots) {
    try {
      out.push(realpathSync(r));
    } catch {
      /* not there: nothing can be planted in it */
    }
  }
  return out;
}

export interface ResolveOptions {
  /** Directories the sandbox can write (real paths): a link at or below any of them is refused. */
  untrusted: string[];
  /** Relative inputs are taken from here (default: the current directory). */
  cwd?: string;
  /** What the path is, for the message (`--read-only`, `.git`, …). */
  what: string;
  /** Allow the last component to be missing (the host is about to create it). */
  mayNotExist?: boolean;
}

/**
 * The physical path `input` names, walked one component at a time like realpath(3) (`..` after a link
 * means the link target's parent, as the kernel sees it), except that a symbolic link inside an
 * untrusted directory is never followed: the whole path is refused, naming the link. Links outside
 * (the user's own, e.g. /home -> /usr/home) are followed. Throws UnsafePathError; synchronous on
 * purpose (no await between the checks).
 */
export function resolveTrusted(input: string, o: ResolveOptions): string {
  if (input === '') throw new UnsafePathError(`${o.what}: empty path`);
  const start = isAbsolute(input) ? input : `${o.cwd ?? process.cwd()}/${input}`;
  const queue = start.split('/').filter((c) => c !== '');
  let cur = '/';
  let hops = 0;
  while (queue.length) {
    const c = queue.shift()!;
    if (c === '.') continue;
    if (c === '..') {
      cur = dirname(cur);
      continue;
    }
    const next = cur === '/' ? `/${c}` : `${cur}/${c}`;
    let st;
    try {
      st = lstatSync(next);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && o.mayNotExist && queue.length === 0) return next;
      throw new UnsafePathError(`${o.what} ${input}: ${next} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`);
    }
    if (st.isSymbolicLink()) {
      const root = o.untrusted.find((r) => isWithin(cur, r));
      if (root !== undefined) {
        throw new UnsafePathError(
          `${o.what} ${input}: ${next} is a symbolic link inside ${root}, which the sandbox can change: refusing to follow it (replace the link with the real path)`,
        );
      }
      if (++hops > 40) throw new UnsafePathError(`${o.what} ${input}: too many symbolic links`);
      const target = readlinkSync(next);
      if (isAbsolute(target)) cur = '/';
      queue.unshift(...target.split('/').filter((x) => x !== ''));
      continue;
    }
    if (queue.length && !st.isDirectory()) throw new UnsafePathError(`${o.what} ${input}: ${next} is not a directory`);
    cur = next;
  }
  return cur;
}

/**
 * mkdir -p for `path` below `base`: `base` itself is the user's (made as usual, links in it followed,
 * e.g. a home under /home -> /usr/home); every component below it must be a real directory, never a
 * link. Returns the path. Throws UnsafePathError when such a component is a link or not a directory.
 */
export async function mkdirNoFollow(path: string, base: string, mode = 0o700): Promise<string> {
  if (!isWithin(path, base)) throw new UnsafePathError(`${path} is not inside ${base}`);
  await mkdir(base, { recursive: true, mode });
  const parts = path.slice(base.length).split('/').filter(Boolean);
  let cur = base === '/' ? '' : base;
  for (const c of parts) {
    cur = `${cur}/${c}`;
    let st = await lstat(cur).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
    if (!st) {
      await mkdir(cur, { mode }).catch((e: NodeJS.ErrnoException) => (e.code === 'EEXIST' ? undefined : Promise.reject(e)));
      st = await lstat(cur);
    }
    if (st.isSymbolicLink()) throw new UnsafePathError(`${cur} is a symbolic link: refusing to use it (the host writes there)`);
    if (!st.isDirectory()) throw new UnsafePathError(`${cur} is not a directory`);
  }
  return path;
}

/**
 * chmod of a directory that must be a real one, never through a link (opened O_DIRECTORY|O_NOFOLLOW,
 * changed through its descriptor). Throws UnsafePathError when it is a link or not a directory.
 */
export async function chmodDirNoFollow(path: string, mode: number): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    await fh.chmod(mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      const link = lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink();
      throw new UnsafePathError(
        `${path} is ${link ? 'a symbolic link' : 'not a directory'}: refusing to change its mode (the gateway can write beside it; remove it)`,
      );
    }
    throw e;
  } finally {
    await fh?.close();
  }
}

/**
 * Create a new file (never an existing one, never through a link: O_CREAT|O_EXCL|O_NOFOLLOW) and hand
 * it over. When `owner` is given the file is chowned through its descriptor, so no name is followed.
 */
export async function createExclusive(
  path: string,
  data: string | Uint8Array,
  owner?: { uid: number; gid: number },
  mode = 0o644,
): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    await fh.writeFile(data);
    if (owner) await fh.chown(owner.uid, owner.gid);
  } finally {
    await fh?.close();
  }
}

/**
 * Give a directory tree to the sandbox user without following a link: lchown on every entry, descend
 * only into real directories. Bounded (entries); returns how many were changed.
 */
export async function chownTreeNoFollow(dir: string, uid: number, gid: number, limit = 200_000): Promise<number> {
  let changed = 0;
  // Deeper than PATH_MAX (the sandbox can build that with relative mkdir/chdir) cannot be named: it is
  // the sandbox's own (the host creates only near the top), so it is left as it is rather than failing.
  const tooLong = (e: NodeJS.ErrnoException) => (e.code === 'ENAMETOOLONG' ? undefined : Promise.reject(e));
  const walk = async (d: string): Promise<void> => {
    const st = await lstat(d).catch(tooLong);
    if (!st) return;
    if (st.uid !== uid || st.gid !== gid) {
      await lchown(d, uid, gid);
      changed++;
    }
    if (!st.isDirectory() || st.isSymbolicLink()) return;
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (changed > limit) return;
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) await walk(p);
      else {
        const s = await lstat(p).catch(tooLong);
        if (!s) continue;
        if (s.uid !== uid || s.gid !== gid) {
          await lchown(p, uid, gid);
          changed++;
        }
      }
    }
  };
  await walk(dir);
  return changed;
}
