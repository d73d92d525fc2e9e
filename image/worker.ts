// Worker mode (`exec --repo URL [--ref REF] [--repo-dir NAME]`): what the user gives is checked here, in
// pure functions, before anything runs; the clone runs inside the sandbox (through the gateway) from
// a fixed script that gets URL, ref and directory as its positional arguments, never as code or options.
// Nothing of the repository runs on the host: the host only reads the commit id the sandbox reports,
// and accepts it only as hex.
import { Allowlist, type Decision } from '../proxy/policy/allowlist.js';
import { parseRuleList, type Rule, type RuleSource } from '../proxy/policy/rules.js';

export class WorkerInputError extends Error {
  override readonly name = 'WorkerInputError';
  readonly code = 'ERR_WORKER_INPUT';
}

export interface RepoUrl {
  /** The URL as git gets it (normalised by WHATWG URL parsing). */
  url: string;
  host: string;
  port: number;
  /** How the gateway sees the clone: a CONNECT tunnel (https) or plain-HTTP requests (http). */
  via: 'connect' | 'http';
}

/**
 * A repository URL: https:// (or http://), a host name, no user or password (a token would land in
 * run.log, exit.json and the sandbox's .git/config), no control characters or spaces. Everything else
 * (ssh, git://, file://, ext::, a leading `-`, scp-like user@host:path) is refused: each is either a
 * way around the gateway's name checks, a local path, a command, or an option to git.
 */
export function parseRepoUrl(raw: string): RepoUrl {
  const bad = (why: string): never => {
    throw new WorkerInputError(`--repo ${JSON.stringify(raw)}: ${why}`);
  };
  if (raw === '') bad('empty');
  if (raw.startsWith('-')) bad('starts with "-" (would be an option to git)');
  if (/[\x00-\x20\x7f-\x9f\\]/.test(raw)) bad('contains a space, a backslash or a control character');
  if (!/^https?:\/\//i.test(raw)) bad("only https:// (or http://) URLs are cloned: the clone goes through the gateway's HTTP proxy");
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return bad('not a valid URL');
  }
  if (u.username || u.password)
    bad('carries a user name or password: credentials in a URL end up in logs and .git/config; use a credential helper inside the sandbox');
  if (u.search || u.hash) bad('has a query or fragment');
  if (!u.hostname || u.hostname.startsWith('[') || /^[0-9.]+$/.test(u.hostname))
    bad('needs a host name (IP literals are refused by the gateway)');
  if (u.pathname === '/' || u.pathname === '') bad('names no repository path');
  const via = u.protocol === 'https:' ? 'connect' : 'http';
  const port = u.port ? Number(u.port) : via === 'connect' ? 443 : 80;
  return { url: u.href, host: u.hostname, port, via };
}

const DIR_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/;

/**
 * The directory in the workdir the repository goes to: one path component of letters, digits, `._-`,
 * not starting with `.` or `-` (no `..`, no `.git`, no absolute path, no option). Derived from the
 * URL's last path segment (minus `.git`) when not given.
 */
export function repoDirName(given: string | undefined, repo: RepoUrl): string {
  if (given !== undefined) {
    if (!DIR_NAME.test(given))
      throw new WorkerInputError(
        `--repo-dir ${JSON.stringify(given)}: one directory name of letters, digits and ._- (not starting with . or -), inside the workdir`,
      );
    return given;
  }
  const segment = new URL(repo.url).pathname.split('/').filter(Boolean).at(-1) ?? '';
  let decoded = '';
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    /* not valid percent-encoding: nothing derived, --repo-dir is asked for below */
  }
  const last = decoded.replace(/\.git$/i, '');
  const name = last
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 100);
  if (!DIR_NAME.test(name)) throw new WorkerInputError(`--repo ${repo.url}: cannot derive a directory name from it: give --repo-dir NAME`);
  return name;
}

/**
 * A ref: a branch, tag or commit name as `git check-ref-format` allows it, narrowed to what cannot be
 * read as an option or as revision syntax: letters, digits and `._/-`, not starting with `-`, `/` or
 * `.`, no `..`, `//`, `/.` or `.lock` components, no trailing `/` or `.`.
 */
export function checkRef(ref: string): string {
  const bad = (why: string): never => {
    throw new WorkerInputError(`--ref ${JSON.stringify(ref)}: ${why}`);
  };
  if (ref === '' || ref.length > 200) bad('must be 1 to 200 characters');
  if (!/^[A-Za-z0-9._/-]+$/.test(ref)) bad('a branch, tag or commit: letters, digits and ._/- only');
  if (/^[-/.]/.test(ref)) bad('may not start with "-", "/" or "."');
  if (/\.\.|\/\/|\/\.|\.lock(\/|$)|[/.]$/.test(ref)) bad('is not a valid ref name (.., //, /., .lock, or a trailing / or .)');
  return ref;
}

/** A commit id as the sandbox reports it: accepted only as 40 or 64 hex digits. */
export function checkCommit(out: string): string | undefined {
  const c = out.trim();
  return /^([0-9a-f]{40}|[0-9a-f]{64})$/.test(c) ? c : undefined;
}

/** The effective allowlist as the gateway wrote it (allowed_domains.effective.json), rebuilt for decide(). */
export function allowlistFromEffective(body: unknown): Allowlist {
  const rules: Rule[] = [];
  const list = (body as { rules?: unknown })?.rules;
  if (!Array.isArray(list)) throw new Error('the effective allowlist has no rules list');
  for (const e of list as Array<{ rule?: unknown; source?: unknown; origin?: unknown }>) {
    if (typeof e?.rule !== 'string') continue;
    const r = parseRuleList(
      [e.rule],
      (typeof e.source === 'string' ? e.source : 'file') as RuleSource,
      typeof e.origin === 'string' ? e.origin : 'effective allowlist',
    );
    if (r.ok) rules.push(...r.rules);
  }
  return new Allowlist(rules);
}

/** The rule to add for a repository host: the name, with its port unless it is the default one. */
export const ruleFor = (r: RepoUrl) => (r.port === (r.via === 'connect' ? 443 : 80) ? r.host : `${r.host}:${r.port}`);

/** Is the repository's host allowed, as the gateway would decide it? A message naming the rule if not. */
export function repoAllowed(repo: RepoUrl, allowlist: Allowlist): { ok: true; decision: Decision } | { ok: false; message: string } {
  const d = allowlist.decide(repo.host, repo.via, repo.port);
  if (d.allow) return { ok: true, decision: d };
  const rule = ruleFor(repo);
  const why =
    d.reason === 'denied-by-rule'
      ? `denied by the rule "${d.rule?.text}" (${d.rule?.origin})`
      : d.reason === 'port-not-allowed'
        ? `allowed, but not on port ${repo.port}`
        : 'not on the allowlist';
  return {
    ok: false,
    message: `the repository host ${repo.host} is ${why}: nothing was cloned. Allow it with "codex-egress allow ${rule}" (or --allow ${rule} for one run)${d.reason === 'denied-by-rule' ? ', after removing the deny rule' : ''}`,
  };
}

/**
 * The script the sandbox runs (sh -c SCRIPT sh URL REF DIR): clone into DIR, or fetch into the clone
 * that is there; check REF out detached (a remote branch, a tag, or a commit); print the commit on the
 * last line as `commit <hex>`. URL, REF and DIR are positional parameters, always quoted, after `--`
 * or `--end-of-options`: never code, never options. GIT_ALLOW_PROTOCOL (set by the caller) keeps git
 * (and submodules, and redirects) on http(s).
 */
export const CLONE_SCRIPT = `set -eu
url=$1; ref=$2; dir=$3
if [ -e "$dir" ] && [ ! -d "$dir/.git" ]; then echo "codex-egress: $dir exists and is not a git clone: remove it or choose --repo-dir" >&2; exit 65; fi
if [ -d "$dir/.git" ]; then
  echo "codex-egress: updating $dir from $url" >&2
  git -C "$dir" fetch --quiet --tags --force --end-of-options "$url" '+refs/heads/*:refs/remotes/origin/*'
else
  echo "codex-egress: cloning $url into $dir" >&2
  git clone --quiet --no-checkout -- "$url" "$dir"
fi
cd "$dir"
if [ -n "$ref" ]; then
  c=$(git rev-parse -q --verify --end-of-options "refs/remotes/origin/$ref^{commit}" 2>/dev/null || git rev-parse -q --verify --end-of-options "refs/tags/$ref^{commit}" 2>/dev/null || git rev-parse -q --verify --end-of-options "$ref^{commit}" 2>/dev/null) || { echo "codex-egress: ref $ref not found in $url" >&2; exit 66; }
else
  c=$(git rev-parse -q --verify "refs/remotes/origin/HEAD^{commit}" 2>/dev/null || git rev-parse -q --verify "HEAD^{commit}") || { echo "codex-egress: $url has no default branch: give --ref" >&2; exit 66; }
fi
git checkout --quiet --force --detach "$c"
echo "commit $c"
`;

/**
 * The clone marked as a safe git directory for Codex's git (safe.directory), through git's environment
 * configuration: nothing is written to a git config file.
 */
export const safeDirectoryEnv = (repoPath: string): Record<string, string> => ({
  GIT_CONFIG_COUNT: '1',
  GIT_CONFIG_KEY_0: 'safe.directory',
  GIT_CONFIG_VALUE_0: repoPath,
});

/** The clone's environment: only http(s) transports (submodules and redirects too), no prompts, the clone safe. */
export const cloneEnv = (repoPath: string): Record<string, string> => ({
  GIT_ALLOW_PROTOCOL: 'https:http',
  GIT_TERMINAL_PROMPT: '0',
  ...safeDirectoryEnv(repoPath),
});

/** Where Codex writes its last message inside the sandbox (container /tmp: no host mount, nothing the host opens). */
export const lastMessagePath = (runId: string) => `/tmp/codex-egress-last-message-${runId}.md`;

/** At most this much of Codex's last message goes into summary.md. */
export const MAX_SUMMARY_BYTES = 1024 * 1024;
