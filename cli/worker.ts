// Worker mode of `exec` (--repo URL [--ref REF] [--repo-dir NAME]): the checks before anything starts,
// the clone inside the sandbox, and Codex's last message. Pure checks live in image/worker.ts.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { execa } from 'execa';
import { UsageError } from './args.js';
import { sandboxExecArgs } from '../image/args.js';
import { DOCKER, dockerResult } from '../image/docker.js';
import type { Project } from '../image/names.js';
import type { StatePaths } from '../image/project.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { readRuleFile } from '../proxy/config.js';
import {
  parseRepoUrl,
  repoDirName,
  checkRef,
  checkCommit,
  allowlistFromEffective,
  repoAllowed,
  cloneEnv,
  CLONE_SCRIPT,
  lastMessagePath,
  MAX_SUMMARY_BYTES,
  WorkerInputError,
  type RepoUrl,
} from '../image/worker.js';

export const WORKER_OPTIONS = {
  repo: { type: 'string' },
  ref: { type: 'string' },
  'repo-dir': { type: 'string' },
} as const;

export const WORKER_HELP = `  --repo URL              worker mode: clone (or update) this https:// repository inside the sandbox,
                          through the gateway, into <workdir>/<repo-dir>, and run Codex there; its host
                          must be allowed (checked first: the rule to add is named)
  --ref REF               check out this branch, tag or commit (default: the default branch)
  --repo-dir NAME         the clone's directory in the workdir (default: from the URL)`;

export interface WorkerPlan {
  repo: RepoUrl;
  ref?: string;
  dir: string;
  /** The clone inside the sandbox (and on the host: <workdir>/<dir>). */
  path: string;
}

/** The worker plan from the flags, or undefined without --repo; bad input is a usage error. */
export function workerPlan(v: { repo?: string; ref?: string; 'repo-dir'?: string }, workdir: string): WorkerPlan | undefined {
  if (v.repo === undefined) {
    if (v.ref !== undefined || v['repo-dir'] !== undefined) throw new UsageError('--ref and --repo-dir need --repo');
    return undefined;
  }
  try {
    const repo = parseRepoUrl(v.repo);
    const dir = repoDirName(v['repo-dir'], repo);
    return { repo, dir, path: `${workdir}/${dir}`, ...(v.ref !== undefined ? { ref: checkRef(v.ref) } : {}) };
  } catch (e) {
    if (e instanceof WorkerInputError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * Is the repository's host allowed? A running gateway: its effective allowlist (what it enforces).
 * Not running yet: the same merge the gateway will make (defaults, OPENAI_ALLOWED_DOMAINS, --allow,
 * allowed_domains.txt), so a denied host fails before anything starts. Returns the message, or undefined.
 */
export async function repoRefusal(
  plan: WorkerPlan,
  paths: StatePaths,
  running: boolean,
  v: { allow?: string[]; 'no-defaults'?: boolean },
): Promise<string | undefined> {
  let allowlist;
  if (running && existsSync(paths.effective)) {
    allowlist = allowlistFromEffective(JSON.parse(await readFile(paths.effective, 'utf8')));
  } else {
    const r = mergeSources({
      defaults: !v['no-defaults'],
      env: process.env.OPENAI_ALLOWED_DOMAINS,
      flags: v.allow ?? [],
      file: await readRuleFile(paths.allowlist),
    });
    if (!r.ok) return `the allowlist has errors: ${r.errors.join('; ')}`;
    allowlist = r.allowlist;
  }
  const d = repoAllowed(plan.repo, allowlist);
  return d.ok ? undefined : d.message;
}

/**
 * Clone or update inside the sandbox, as its user, through the gateway; everything it prints goes to
 * `log` (and the terminal). Returns the commit checked out, or the failure.
 */
export async function cloneInSandbox(
  p: Project,
  plan: WorkerPlan,
  log: Writable,
): Promise<{ ok: true; commit: string } | { ok: false; exitCode: number; message: string }> {
  const env = cloneEnv(plan.path);
  const sub = execa(
    DOCKER,
    sandboxExecArgs(p, ['sh', '-c', CLONE_SCRIPT, 'sh', plan.repo.url, plan.ref ?? '', plan.dir], { envNames: Object.keys(env) }),
    {
      reject: false,
      stdin: 'ignore',
      env,
      timeout: 30 * 60_000,
      all: true,
      lines: false,
    },
  );
  sub.all?.on('data', (c: Buffer) => {
    log.write(c);
    process.stderr.write(c);
  });
  const r = await sub;
  const exitCode = r.exitCode ?? 1;
  if (exitCode !== 0)
    return { ok: false, exitCode, message: `the clone of ${plan.repo.url} failed in the sandbox (exit ${exitCode}): see run.log` };
  // The sandbox's answer is hostile input: only a commit id on the last `commit ` line is taken.
  const line = String(r.stdout ?? '')
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('commit '));
  const commit = line ? checkCommit(line.slice('commit '.length)) : undefined;
  if (!commit) return { ok: false, exitCode: 1, message: 'the sandbox reported no valid commit id after the clone' };
  return { ok: true, commit };
}

/** Codex's last message, read inside the sandbox (the host opens no path the sandbox controls); bounded. */
export async function lastMessage(p: Project, runId: string): Promise<string | undefined> {
  const r = await dockerResult(['exec', p.sandbox, 'head', '-c', String(MAX_SUMMARY_BYTES), lastMessagePath(runId)], { timeoutMs: 30_000 });
  return r.exitCode === 0 ? r.stdout : undefined;
}

/** summary.md: Codex's last message under a heading that says what ran. */
export function summaryMarkdown(o: { prompt: string; exitCode: number; repo?: string; commit?: string; message?: string }): string {
  const head = [
    `# codex-egress exec: exit ${o.exitCode}`,
    '',
    `- prompt: ${JSON.stringify(o.prompt)}`,
    ...(o.repo ? [`- repository: ${o.repo}${o.commit ? ` at ${o.commit}` : ''}`] : []),
    '',
  ];
  return `${head.join('\n')}\n${o.message?.trim() ? o.message.trimEnd() : '(Codex left no last message)'}\n`;
}
