// Build both images from their Dockerfiles and the contexts assembled on the host (image/context.ts).
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildArgs, DEFAULT_IMAGES, type ImageNames } from './args.js';
import { dockerInherit, dockerResult } from './docker.js';
import { codexContext, dockerfilePath, gatewayContext, codexPlatform, type CodexSource, type Context } from './context.js';

export interface BuildPlan {
  images?: ImageNames;
  /** BASE_IMAGE for both (default: the Dockerfiles' public slim Node image). */
  base?: string;
  codex: CodexSource;
  /** Extra --build-arg KEY=VALUE for both images (e.g. PACKAGES=…). */
  buildArgs?: Record<string, string>;
  only?: 'gateway' | 'codex';
  /** Show docker's build output (default) or keep it for errors only. */
  quiet?: boolean;
}

async function buildOne(kind: 'gateway' | 'codex', ctx: Context, tag: string, args: Record<string, string>, quiet: boolean): Promise<void> {
  await copyFile(dockerfilePath(kind), join(ctx.dir, 'Dockerfile'));
  const argv = buildArgs({ dockerfile: join(ctx.dir, 'Dockerfile'), context: ctx.dir, tag, buildArgs: args });
  if (quiet) {
    const r = await dockerResult(argv, { timeoutMs: 30 * 60_000 });
    if (r.exitCode !== 0) throw new Error(`building ${tag} failed:\n${(r.stdout + r.stderr).trim().split('\n').slice(-25).join('\n')}`);
  } else if ((await dockerInherit(argv)) !== 0) {
    throw new Error(`building ${tag} failed (output above)`);
  }
}

export async function buildImages(plan: BuildPlan, log: (s: string) => void): Promise<ImageNames> {
  const images = plan.images ?? DEFAULT_IMAGES;
  const common = { ...(plan.base ? { BASE_IMAGE: plan.base } : {}), ...plan.buildArgs };
  if (plan.only !== 'codex') {
    const ctx = await gatewayContext();
    try {
      log(`building ${images.gateway}`);
      await buildOne('gateway', ctx, images.gateway, common, !!plan.quiet);
    } finally {
      await ctx.remove();
    }
  }
  if (plan.only !== 'gateway') {
    const ctx = await codexContext(plan.codex, log);
    try {
      // The image's default user; `up` gives it the workdir owner's uid/gid at start.
      const user = process.getuid?.() ? { uid: process.getuid(), gid: process.getgid?.() ?? 1000 } : { uid: 1000, gid: 1000 };
      log(`building ${images.codex}`);
      const args = { UID: String(user.uid), GID: String(user.gid), CODEX_PLATFORM: plan.codex.platform ?? codexPlatform(), ...common };
      await buildOne('codex', ctx, images.codex, args, !!plan.quiet);
    } finally {
      await ctx.remove();
    }
  }
  return images;
}
