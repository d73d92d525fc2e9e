// Build contexts for the two images, assembled from what was built on the host: no npm registry is
// used inside a build. The gateway gets dist/, bin/ and the production node_modules (from the lockfile);
// the sandbox gets the `npm pack`ed Codex packages.
import { cp, mkdir, mkdtemp, readFile, rename, rm, readdir, copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** The Codex release the sandbox image installs unless told otherwise (build --codex-version). */
export const CODEX_VERSION = '0.169.0';

/** The installed package's root (this file runs from dist/image). */
export const PACKAGE_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

export const dockerfilePath = (kind: 'gateway' | 'codex') => join(PACKAGE_ROOT, 'image', `Dockerfile.${kind}`);

interface Lockfile {
  packages?: Record<string, { dev?: boolean; devOptional?: boolean; link?: boolean }>;
}

/** node_modules paths of the production dependencies (lockfile v2/v3), shortest first. Pure. */
export function productionPackages(lock: Lockfile): string[] {
  return Object.entries(lock.packages ?? {})
    .filter(([path, e]) => path.startsWith('node_modules/') && !e.dev && !e.devOptional && !e.link)
    .map(([path]) => path)
    .sort((a, b) => a.length - b.length || a.localeCompare(b));
}

export interface Context {
  dir: string;
  remove(): Promise<void>;
}

async function tempContext(kind: string): Promise<Context> {
  const dir = await mkdtemp(join(tmpdir(), `codex-egress-${kind}-ctx-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The gateway's context: app/{package.json, bin, dist/{proxy,firewall,cli,image}, node_modules}. */
export async function gatewayContext(root = PACKAGE_ROOT): Promise<Context> {
  const ctx = await tempContext('gateway');
  try {
    const app = join(ctx.dir, 'app');
    await mkdir(app, { recursive: true });
    await copyFile(join(root, 'package.json'), join(app, 'package.json'));
    await cp(join(root, 'bin'), join(app, 'bin'), { recursive: true });
    for (const d of ['proxy', 'firewall', 'cli', 'image']) {
      const src = join(root, 'dist', d);
      if (existsSync(src)) await cp(src, join(app, 'dist', d), { recursive: true, filter: (s) => !s.endsWith('.map') });
    }
    if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error(`${root}/dist is not built: run "npx tsc -p ." first`);
    const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lockfile;
    for (const path of productionPackages(lock)) {
      // nested copies are inside their parent's copy already
      if (existsSync(join(app, path))) continue;
      if (!existsSync(join(root, path))) continue; // an optional dependency not installed on this platform
      await cp(join(root, path), join(app, path), { recursive: true, dereference: true });
    }
    return ctx;
  } catch (err) {
    await ctx.remove();
    throw err;
  }
}

export interface CodexSource {
  /** A directory holding codex.tgz (and codex-platform.tgz): used as is. */
  tarballs?: string;
  /** Otherwise this version is `npm pack`ed on the host (launcher + native package). */
  version?: string;
  platform?: string;
}

/** The npm specs of a Codex release: the launcher and its native package for the platform. Pure. */
export function codexSpecs(version: string, platform: string): [string, string] {
  return [`@openai/codex@${version}`, `@openai/codex@${version}-${platform}`];
}

export const codexPlatform = () => `linux-${process.arch === 'arm64' ? 'arm64' : 'x64'}`;

/** The sandbox's context: codex/codex.tgz and codex/codex-platform.tgz. */
export async function codexContext(src: CodexSource): Promise<Context> {
  const ctx = await tempContext('codex');
  try {
    const out = join(ctx.dir, 'codex');
    await mkdir(out);
    if (src.tarballs) {
      for (const f of ['codex.tgz', 'codex-platform.tgz']) {
        if (existsSync(join(src.tarballs, f))) await copyFile(join(src.tarballs, f), join(out, f));
      }
      if (!existsSync(join(out, 'codex.tgz'))) throw new Error(`${src.tarballs}/codex.tgz not found`);
    } else {
      const [launcher, native] = codexSpecs(src.version ?? CODEX_VERSION, src.platform ?? codexPlatform());
      process.stderr.write(`codex-egress build: npm pack ${launcher} ${native}\n`);
      const r = await execa('npm', ['pack', '--json', '--pack-destination', out, launcher, native], { stderr: 'inherit' });
      const files = (JSON.parse(String(r.stdout)) as Array<{ filename: string }>).map((f) => f.filename.replace(/^.*\//, ''));
      if (files.length !== 2) throw new Error(`npm pack returned ${files.length} packages, expected 2`);
      await rename(join(out, files[0]!), join(out, 'codex.tgz'));
      await rename(join(out, files[1]!), join(out, 'codex-platform.tgz'));
    }
    if ((await readdir(out)).length === 0) throw new Error('no Codex package');
    return ctx;
  } catch (err) {
    await ctx.remove();
    throw err;
  }
}
