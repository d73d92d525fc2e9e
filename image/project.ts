// The project's files on the host: the gateway's state (allowlist, audit log), the Codex home, the
// sandbox user, and the checks on the workdir. Small I/O; the allowlist edit itself is pure.
import { chmod, copyFile, mkdir, readFile, readdir, rename, writeFile, stat } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, relative, isAbsolute } from 'node:path';
import { parseRuleFile, ruleText } from '../proxy/policy/rules.js';
import { ALLOWLIST_FILE, AUDIT_FILE } from './args.js';
import type { Project } from './names.js';

export class ProjectError extends Error {
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
    dir,
    allowlist: join(dir, ALLOWLIST_FILE),
    effective: join(dir, ALLOWLIST_FILE.replace(/\.txt$/, '.effective.json')),
    logDir: join(dir, 'logs'),
    auditLog: join(dir, 'logs', AUDIT_FILE),
    /** The Codex home, per project, inside the workdir (the sandbox's own files). */
    codexHome: join(p.workdir, '.codex-egress', 'codex-home'),
    runs: join(p.workdir, '.codex-egress', 'runs'),
  };
}
export type StatePaths = ReturnType<typeof statePaths>;

/** The sandbox user: the host's uid/gid, except root, which becomes 1000:1000 (the sandbox is never root). */
export function sandboxUser(uid = process.getuid?.() ?? 1000, gid = process.getgid?.() ?? 1000) {
  return uid === 0 ? { uid: 1000, gid: 1000 } : { uid, gid };
}

const ALLOWLIST_HEADER = `# codex-egress allowlist: one rule per line, edited by "codex-egress allow/deny" or by hand.
# example.com = that host · *.example.com = subdomains · .example.com = both · :port suffix · !rule = deny
`;

/** Create the state directories (group-writable for the gateway's root, which has no DAC_OVERRIDE). */
export async function prepareState(s: StatePaths): Promise<void> {
  await mkdir(s.logDir, { recursive: true });
  await chmod(s.dir, 0o770);
  await chmod(s.logDir, 0o770);
  if (!existsSync(s.allowlist)) await writeFile(s.allowlist, ALLOWLIST_HEADER);
  await mkdir(s.codexHome, { recursive: true });
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
  const candidates = [env.CODEX_AUTH_FILE, ...[env.CODEX_CONFIG_DIR, join(home, '.codex'), join(home, '.config', 'codex')].map((d) => d && join(d, 'auth.json'))];
  return candidates.find((f): f is string => !!f && existsSync(f));
}

/** Seed the project's Codex home: config.toml if missing, prompts without overwriting. */
export async function seedCodexHome(codexHome: string, env: NodeJS.ProcessEnv = process.env, home = homedir()): Promise<void> {
  await mkdir(codexHome, { recursive: true });
  const src = userCodexDir(env, home);
  if (!src) return;
  const cfg = join(src, 'config.toml');
  if (existsSync(cfg) && !existsSync(join(codexHome, 'config.toml'))) await copyFile(cfg, join(codexHome, 'config.toml'));
  const prompts = join(src, 'prompts');
  if (existsSync(prompts) && (await stat(prompts)).isDirectory()) {
    await mkdir(join(codexHome, 'prompts'), { recursive: true });
    for (const f of await readdir(prompts)) {
      const to = join(codexHome, 'prompts', f);
      if (!existsSync(to) && (await stat(join(prompts, f))).isFile()) await copyFile(join(prompts, f), to);
    }
  }
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
    if (!res.success) errors.push(`"${r}": ${res.error.issues.map((i) => i.message).join('; ')}`);
    return text;
  });
  if (errors.length) throw new ProjectError(`invalid rule${errors.length > 1 ? 's' : ''}:\n  ${errors.join('\n  ')}`);
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
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, r.content);
  await rename(tmp, path);
  return r;
}
