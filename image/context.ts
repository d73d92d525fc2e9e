// Build contexts for the two images, assembled from what was built on the host: no npm registry is
// used inside a build. The gateway gets dist/, bin/ and the production node_modules (from the lockfile);
// the sandbox gets the `npm pack`ed Codex packages.
import { cp, mkdir, mkdtemp, readFile, rename, rm, readdir, copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
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

/**
 * The production dependency closure of the package at root, found the way Node finds them (the
 * package's own node_modules, then its ancestors'). Returns each package directory with the path it
 * takes under the image's app/ (node_modules/…, nesting kept, so each package resolves what it did here).
 */
export async function resolveDependencies(root: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const deps = async (dir: string) => {
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
  };
  const locate = (from: string, name: string): { dir: string; base: string } | undefined => {
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return { dir: candidate, base: dir };
      if (dirname(dir) === dir) return undefined;
    }
  };
  const appPath = (dir: string): string => {
    if (dir.startsWith(`${root}/`)) return relative(root, dir);
    // hoisted above the package: relative to the directory holding the outermost node_modules it is in
    const i = dir.indexOf('/node_modules/');
    return relative(dir.slice(0, i), dir);
  };
  const queue: Array<[string, string]> = (await deps(root)).map((n) => [root, n]);
  while (queue.length) {
    const [from, name] = queue.shift()!;
    const hit = locate(from, name);
    if (!hit || found.has(hit.dir)) continue; // optional and not installed, or seen
    found.set(hit.dir, appPath(hit.dir));
    for (const d of await deps(hit.dir)) queue.push([hit.dir, d]);
  }
  return found;
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
    if (existsSync(join(root, 'package-lock.json'))) {
      // A checkout: the lockfile lists exactly the production packages and where they are.
      const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lockfile;
      for (const path of productionPackages(lock)) {
        // nested copies are inside their parent's copy already
        if (existsSync(join(app, path))) continue;
        if (!existsSync(join(root, path))) continue; // an optional dependency not installed on this platform
        await cp(join(root, path), join(app, path), { recursive: true, dereference: true });
      }
    } else {
      // An installed package (no lockfile, dependencies hoisted above it): follow Node's resolution.
      const packages = [...(await resolveDependencies(root))].sort((a, b) => a[1].length - b[1].length);
      for (const [dir, path] of packages) {
        if (!existsSync(join(app, path))) await cp(dir, join(app, path), { recursive: true, dereference: true });
      }
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

/** The sandbox's context: codex/codex.tgz and codex/codex-platform.tgz; `log` gets the progress (the CLI prints it). */
export async function codexContext(src: CodexSource, log: (s: string) => void): Promise<Context> {
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
      log(`npm pack ${launcher} ${native}`);
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
