// The effective allowlist file (allowed_domains.effective.json): the merged rules with provenance, as
// the gateway enforces them. Its name, its format, its writer (the gateway) and its reader (the CLI:
// domains, status, exec, verify) are all here, stated once.
import { open, rename, writeFile, constants as fsc } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import type { Allowlist } from './policy/allowlist.js';
import { RULE_SOURCES } from './policy/rules.js';

/** The companion file the effective allowlist is written to: allowed_domains.txt → allowed_domains.effective.json */
export function effectivePath(allowlistPath: string): string {
  const base = basename(allowlistPath).replace(/\.txt$/, '');
  return join(dirname(allowlistPath), `${base}.effective.json`);
}

const effectiveFile = z.object({
  generated: z.string(),
  rules: z.array(z.object({ rule: z.string(), source: z.enum(RULE_SOURCES), origin: z.string() })),
});
export type EffectiveAllowlist = z.infer<typeof effectiveFile>;
export type EffectiveRule = EffectiveAllowlist['rules'][number];

export class EffectiveFileError extends Error {
  override readonly name = 'EffectiveFileError';
  readonly code = 'ERR_EFFECTIVE_ALLOWLIST';
}

/** The gateway writes it; a reader refuses anything larger (a file that big is not ours). */
const MAX_BYTES = 64 * 1024 * 1024;

export function effectiveBody(allowlist: Allowlist, now = new Date()): EffectiveAllowlist {
  return { generated: now.toISOString(), rules: allowlist.rules.map((r) => ({ rule: r.text, source: r.source, origin: r.origin })) };
}

/** Write the merged allowlist with provenance, atomically, for people and `codex-egress domains` to read. */
export async function writeEffective(allowlistPath: string, allowlist: Allowlist): Promise<string> {
  const path = effectivePath(allowlistPath);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(effectiveBody(allowlist), null, 2)}\n`);
  await rename(tmp, path);
  return path;
}

/**
 * Read an effective allowlist file: undefined when there is none; EffectiveFileError when it is a link,
 * not a regular file, too large, not JSON or not in this format (never a crash, never followed: the
 * directory is shared with the gateway container).
 */
export async function readEffective(path: string): Promise<EffectiveAllowlist | undefined> {
  let text: string;
  try {
    const fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new EffectiveFileError(`${path}: not a regular file`);
      if (st.size > MAX_BYTES) throw new EffectiveFileError(`${path}: larger than ${MAX_BYTES} bytes`);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof EffectiveFileError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new EffectiveFileError(`${path}: a symbolic link, not followed`);
    throw new EffectiveFileError(`${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EffectiveFileError(`${path}: not JSON`);
  }
  const r = effectiveFile.safeParse(json);
  if (!r.success) throw new EffectiveFileError(`${path}: not an effective allowlist (${r.error.issues[0]?.message ?? 'invalid'})`);
  return r.data;
}
