// The project's files on the host: the gateway's state (allowlist, audit log), the Codex home, the
// sandbox user, and the checks on the workdir. Small I/O; the allowlist edit itself is pure.
import { chmod, mkdir, readFile, readdir, rename, writeFile, lstat, unlink, lchown } from 'node:fs/promises';
import { existsSync, statSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, relative, isAbsolute, dirname } from 'node:path';
import { parseRuleFile, ruleText } from '../proxy/policy/rules.js';
import { effectivePath } from '../proxy/effective.js';
import { PROTECTED_SANDBOX_PATHS } from './args.js';
import { ALLOWLIST_FILE, AUDIT_FILE } from '../proxy/endpoints.js';
import type { Project } from './names.js';
import {
  UnsafePathError,
  resolveTrusted,
  mkdirNoFollow,
  createExclusive,
  chownTreeNoFollow,
  chmodDirNoFollow,
  isWithin,
  realRoots,
} from './paths.js';

export class ProjectError extends Error {
  override readonly name = 'ProjectError';
  readonly code = 'ERR_PROJECT';
}

/** The workdir must be a directory, not `/`, not the home directory itself, and inside WORKSPACE_ROOT_DIR when set. */
export function checkWorkdir(dir: string, env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  const abs = resolve(dir);
  if (abs === '/') throw new ProjectError('refusing to use / as the workdir');
  if (abs === resolve(home)) throw new ProjectError(`refusing to use the home directory itself (${abs}) as the workdir`);
  const root = env.WORKSPACE_ROOT_DIR;
  if (root) {
    const rel = relative(resolve(root), abs);
    if (rel.startsWith('..') || isAbsolute(rel)) throw new ProjectError(`workdir ${abs} is outside WORKSPACE_ROOT_DIR (${resolve(root)})`);
  }
  if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new ProjectError(`workdir ${abs} is not a directory`);
  return abs;
}

/**
 * Where the gateway's state lives on the host: outside the workdir, so the sandbox (which has the
 * workdir read-write) can never edit its own allowlist. CODEX_EGRESS_STATE_DIR overrides the base.
 */
export function statePaths(p: Project, env: NodeJS.ProcessEnv = process.env) {
  const base = env.CODEX_EGRESS_STATE_DIR || join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'codex-egress');
  const dir = join(base, p.name);
  return {
    base,
    dir,
    allowlist: join(dir, ALLOWLIST_FILE),
    effective: effectivePath(join(dir, ALLOWLIST_FILE)),
    logDir: join(dir, 'logs'),
    auditLog: join(dir, 'logs', AUDIT_FILE),
    /**
     * The Codex home, per project, in the state directory (never in the workdir: the host seeds and
     * chowns it, and Docker creates mount points in it). The sandbox has it read-write.
     */
    codexHome: join(dir, 'codex-home'),
    /** `exec` results (run.log, exit.json): written by the host, so outside everything the sandbox can change. */
    runs: join(dir, 'runs'),
    /** Where Codex's home lived before (inside the workdir): no longer read or written. */
    legacyCodexHome: join(p.workdir, '.codex-egress', 'codex-home'),
  };
}
export type StatePaths = ReturnType<typeof statePaths>;

/** The directories the sandbox can write, whose contents the host must never follow a link through. */
export function sandboxWritable(p: Project, s: StatePaths, sessionsPath?: string): string[] {
  return realRoots([p.workdir, s.codexHome, ...(sessionsPath ? [sessionsPath] : [])]);
}

/**
 * The state directory must not overlap the workdir (either inside the other): the sandbox has the
 * workdir read-write and must never reach its own allowlist, and the host writes the state tree.
 */
export function checkStateOutsideWorkdir(p: Project, s: StatePaths): void {
  const real = (x: string) => {
    try {
      return realpathSync(x);
    } catch {
      return resolve(x);
    }
  };
  const w = real(p.workdir);
  // the state base may not exist yet: compare its nearest existing ancestor's real path
  let base = resolve(s.base);
  let suffix = '';
  while (!existsSync(base) && base !== '/') {
    suffix = `/${base.split('/').pop()}${suffix}`;
    base = resolve(base, '..');
  }
  const b = `${real(base)}${suffix}`.replace(/^\/\//, '/');
  if (isWithin(b, w))
    throw new ProjectError(
      `the state directory ${s.base} is inside the workdir ${p.workdir}: the sandbox could change its own allowlist (set CODEX_EGRESS_STATE_DIR elsewhere)`,
    );
  if (isWithin(w, b))
    throw new ProjectError(`the workdir ${p.workdir} is inside the state directory ${s.base}: choose a workdir outside it`);
}

/**
 * The workdir is mounted read-write at its own path inside the sandbox: it must neither contain nor lie
 * inside a path the appliance relies on there (PROTECTED_SANDBOX_PATHS: the Codex home, whose mount a
 * link planted in the workdir would redirect; the image's binaries, which `up` runs as root).
 */
export function checkWorkdirPlacement(workdir: string): void {
  for (const d of PROTECTED_SANDBOX_PATHS) {
    if (isWithin(d, workdir))
      throw new ProjectError(
        `the workdir ${workdir} contains ${d} of the sandbox (it is mounted at the same path): choose a project directory elsewhere`,
      );
    if (isWithin(workdir, d))
      throw new ProjectError(
        `the workdir ${workdir} is inside ${d} of the sandbox (it is mounted at the same path): choose a project directory elsewhere`,
      );
  }
}

export interface SandboxUser {
  uid: number;
  gid: number;
  /** How it was chosen: the workdir's owner, or --user. */
  source: 'workdir-owner' | 'flag';
}

/**
 * The sandbox user: the owner (uid and gid) of the workdir, so Codex can edit the project and what it
 * creates belongs to the project's owner, whoever runs codex-egress. Never uid 0 unless asked for
 * explicitly with `--user 0[:GID]` (`flag`); a root-owned workdir without it is refused.
 */
export function sandboxUser(owner: { uid: number; gid: number }, flag?: string): SandboxUser {
  if (flag !== undefined) {
    const m = /^(root|\d{1,10})(?::(\d{1,10}))?$/.exec(flag.trim());
    if (!m) throw new ProjectError(`--user must be UID[:GID] (numbers) or root, not "${flag}"`);
    const uid = m[1] === 'root' ? 0 : Number(m[1]);
    const gid = m[2] !== undefined ? Number(m[2]) : uid === 0 ? 0 : owner.gid;
    if (uid > 0x7fffffff || gid > 0x7fffffff) throw new ProjectError(`--user ${flag}: out of range`);
    return { uid, gid, source: 'flag' };
  }
  if (owner.uid === 0) {
    throw new ProjectError(
      'the workdir is owned by root, and the sandbox never runs as root unless asked: chown the project to its user, or pass --user UID:GID (--user 0 runs the sandbox as root)',
    );
  }
  return { uid: owner.uid, gid: owner.gid, source: 'workdir-owner' };
}

/** The workdir's owner as the host sees it. */
export function workdirOwner(workdir: string): { uid: number; gid: number } {
  const st = statSync(workdir);
  return { uid: st.uid, gid: st.gid };
}

const ALLOWLIST_HEADER = `# codex-egress allowlist: one rule per line, edited by "codex-egress allow/deny" or by hand.
# example.com = that host · *.example.com = subdomains · .example.com = both · :port suffix · !rule = deny
`;

/**
 * Create the state directories (group-writable for the gateway's root, which has no DAC_OVERRIDE), the
 * Codex home and the runs directory, no component a link.
 */
export async function prepareState(s: StatePaths): Promise<void> {
  await mkdir(s.logDir, { recursive: true }); // the user's own state tree
  // The gateway has the project's state directory read-write (as root, through the group): what is in
  // it may have been replaced by a link, so nothing below it is changed through one.
  await chmod(s.dir, 0o770);
  await chmodDirNoFollow(s.logDir, 0o770);
  if (!existsSync(s.allowlist)) await createExclusive(s.allowlist, ALLOWLIST_HEADER);
  // what the host writes in from here on: no link below the project's state directory
  await mkdirNoFollow(s.codexHome, s.dir);
  await mkdirNoFollow(s.runs, s.dir);
}

/** Hand the Codex home to the sandbox user (only root can; lchown, never through a link). */
export async function giveCodexHome(s: StatePaths, user: { uid: number; gid: number }): Promise<number> {
  return chownTreeNoFollow(s.codexHome, user.uid, user.gid);
}

/**
 * The mount point of auth.json inside the Codex home: Docker would create it (as root, following a
 * link the sandbox left there). Make it a plain empty file owned by the sandbox user, removing a link
 * or anything else in its place first (unlink never follows).
 */
export async function prepareAuthMountPoint(codexHome: string, user: { uid: number; gid: number }, mounted: boolean): Promise<void> {
  const path = join(codexHome, 'auth.json');
  const st = await lstat(path).catch(() => undefined);
  if (!mounted) {
    // An empty mount point left by an earlier run with auth.json would read as a broken auth.json.
    if (st && (st.isSymbolicLink() || (st.isFile() && st.size === 0))) await unlink(path);
    return;
  }
  await mountPoint(codexHome, 'auth.json', 'file', user);
}

/**
 * The mount point of --sessions-path inside the Codex home (`sessions`). Docker resolves a mount
 * destination inside the container, following links there: a `sessions` link the sandbox left in its
 * Codex home (say to /usr/local/bin or /etc) would put the sessions directory, whose contents the
 * sandbox also writes, over that directory of the image, and the next `docker exec -u 0` (the user fix
 * at start) would run the sandbox's `node` as root. When the sessions directory is mounted, the mount
 * point must be a real directory: a link or any other non-directory in its place is removed first.
 */
export async function prepareSessionsMountPoint(codexHome: string, user: { uid: number; gid: number }, mounted: boolean): Promise<void> {
  if (mounted) await mountPoint(codexHome, 'sessions', 'dir', user);
}

/**
 * A mount destination inside the Codex home, which the sandbox can change: it must be a real file or
 * directory of that kind when Docker mounts over it (Docker follows a link there, inside the container).
 * Anything else in its place (a link, another kind) is removed and the mount point made anew, handed to
 * the sandbox user when root runs this. A directory where a file belongs cannot be removed safely: refused.
 */
async function mountPoint(codexHome: string, name: string, kind: 'file' | 'dir', user: { uid: number; gid: number }): Promise<void> {
  const path = join(codexHome, name);
  const st = await lstat(path).catch(() => undefined);
  if (st && (kind === 'file' ? st.isFile() : st.isDirectory())) return;
  if (st?.isDirectory()) throw new ProjectError(`${path} is a directory: remove it (the ${name} mount point)`);
  if (st) await unlink(path);
  const owner = process.getuid?.() === 0 ? user : undefined;
  if (kind === 'file') return createExclusive(path, '', owner, 0o600);
  await mkdirNoFollow(path, codexHome);
  if (owner) await lchown(path, owner.uid, owner.gid);
}

/** The first existing user Codex config directory (CODEX_CONFIG_DIR, ~/.codex, ~/.config/codex). */
export function userCodexDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string | undefined {
  return [env.CODEX_CONFIG_DIR, join(home, '.codex'), join(home, '.config', 'codex')].find((d): d is string => !!d && existsSync(d));
}

/** auth.json: --auth-file, CODEX_AUTH_FILE, then the user's Codex directories. Never copied: mounted read-only. */
export function findAuthFile(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, home = homedir()): string | undefined {
  if (flag) {
    if (!existsSync(flag)) throw new ProjectError(`--auth-file ${flag} does not exist`);
    return resolve(flag);
  }
  const candidates = [
    env.CODEX_AUTH_FILE,
    ...[env.CODEX_CONFIG_DIR, join(home, '.codex'), join(home, '.config', 'codex')].map((d) => d && join(d, 'auth.json')),
  ];
  return candidates.find((f): f is string => !!f && existsSync(f));
}

/**
 * Seed the project's Codex home: config.toml if missing, prompts without overwriting. The Codex home is
 * the sandbox's to write, so nothing in it is followed: files are created with O_EXCL|O_NOFOLLOW (an
 * existing name, a link included, is left alone), a `prompts` that is not a real directory is skipped.
 * The sources are the user's; a link among them inside `untrusted` is not read.
 */
export async function seedCodexHome(
  codexHome: string,
  env: NodeJS.ProcessEnv = process.env,
  home = homedir(),
  o: { owner?: { uid: number; gid: number }; untrusted?: string[]; config?: string } = {},
): Promise<string[]> {
  const seeded: string[] = [];
  await mkdirNoFollow(codexHome, dirname(codexHome));
  // --config FILE|DIR (resolved and checked by the caller) comes before the search order, and its
  // config.toml replaces the project's (an explicit choice, each run); a FILE brings no prompts.
  const given = o.config
    ? (await lstat(o.config)).isDirectory()
      ? { dir: o.config }
      : { dir: dirname(o.config), file: o.config }
    : undefined;
  const found = given?.dir ?? userCodexDir(env, home);
  if (!found) return seeded;
  const untrusted = o.untrusted ?? [];
  let src: string;
  try {
    src = resolveTrusted(found, { untrusted, what: 'the Codex config directory' });
  } catch (e) {
    if (e instanceof UnsafePathError && !given) return seeded;
    throw e;
  }
  const copy = async (from: string, to: string) => {
    const st = await lstat(from).catch(() => undefined);
    if (!st || !st.isFile() || (untrusted.some((r) => isWithin(from, r)) && st.isSymbolicLink())) return;
    try {
      await createExclusive(to, await readFile(from), o.owner);
      seeded.push(to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' && (e as NodeJS.ErrnoException).code !== 'ELOOP') throw e;
    }
  };
  if (given) {
    // Replaced, never written through: whatever the sandbox left under that name goes first (unlink does not follow).
    const old = await lstat(join(codexHome, 'config.toml')).catch(() => undefined);
    if (old?.isDirectory()) throw new ProjectError(`${join(codexHome, 'config.toml')} is a directory: remove it to use --config`);
    if (old) await unlink(join(codexHome, 'config.toml'));
  }
  await copy(given?.file ?? join(src, 'config.toml'), join(codexHome, 'config.toml'));
  if (given?.file) return seeded;
  const prompts = join(src, 'prompts');
  const pst = await lstat(prompts).catch(() => undefined);
  if (pst?.isDirectory()) {
    const dest = join(codexHome, 'prompts');
    const dst = await lstat(dest).catch(() => undefined);
    if (!dst) await mkdirNoFollow(dest, codexHome);
    else if (dst.isSymbolicLink() || !dst.isDirectory()) return seeded; // left by the sandbox: not followed
    for (const f of await readdir(prompts)) await copy(join(prompts, f), join(dest, f));
  }
  return seeded;
}

/**
 * Edit the allowlist file's text: `allow` adds each rule and removes its `!rule`; `deny` removes the rule
 * and adds `!rule` (deny wins over every source, defaults and flags included). Comments and other lines
 * stay. Pure; throws ProjectError naming each invalid rule.
 */
export function editAllowlist(content: string, op: 'allow' | 'deny', rules: string[]): { content: string; changed: string[] } {
  const errors: string[] = [];
  const bodies = rules.map((r) => {
    const text = r.trim().replace(/^!/, '').trim();
    const res = ruleText.safeParse(text);
    // The parser's messages already name the rule ("*.com": …): it is not quoted twice.
    const why = res.success ? '' : res.error.issues.map((i) => i.message).join('; ');
    if (!res.success) errors.push(why.startsWith(JSON.stringify(text)) ? why : `"${r}": ${why}`);
    return text;
  });
  if (errors.length) throw new ProjectError(`invalid rule${errors.length > 1 ? 's' : ''} ${errors.join('; ')}`);
  let lines = content.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const changed: string[] = [];
  for (const body of bodies) {
    const add = op === 'allow' ? body : `!${body}`;
    const drop = op === 'allow' ? `!${body}` : body;
    const key = (l: string) => l.replace(/#.*/, '').replace(/\s+/g, '').toLowerCase();
    const before = lines.length;
    lines = lines.filter((l) => key(l) !== key(drop));
    const present = lines.some((l) => key(l) === key(add));
    if (!present) lines.push(add);
    if (!present || lines.length !== before) changed.push(add);
  }
  const out = `${lines.join('\n')}\n`;
  const check = parseRuleFile(out, 'allowlist');
  if (!check.ok) throw new ProjectError(`the allowlist would not parse:\n  ${check.errors.join('\n  ')}`);
  return { content: out, changed };
}

/** Apply editAllowlist to the file, atomically (the gateway watches it and reloads). */
export async function editAllowlistFile(path: string, op: 'allow' | 'deny', rules: string[]) {
  const current = existsSync(path) ? await readFile(path, 'utf8') : ALLOWLIST_HEADER;
  const r = editAllowlist(current, op, rules);
  // The same bytes are not written again: the gateway reloads on a change of content, and there is none.
  if (r.content === current && existsSync(path)) return r;
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, r.content);
  await rename(tmp, path);
  return r;
}
