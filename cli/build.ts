// `codex-egress build`: build the gateway and sandbox images from image/Dockerfile.* with visible progress.
import { parse, UsageError } from './args.js';
import { EXIT, IMAGE_HELP, imageOptions, imagesFrom, err } from './common.js';
import { buildImages } from '../image/build.js';
import { CODEX_VERSION } from '../image/context.js';

export const BUILD_USAGE = `Usage: codex-egress build [options]

Builds the gateway image (Node + iptables + ipset + this package's built gateway and production
dependencies, copied from here) and the sandbox image (Node + Codex + what Codex needs: procps,
bubblewrap, git, CA certificates; plus PACKAGES; a non-root user "up" gives the workdir owner's uid/gid).
The Codex packages are fetched on this host with "npm pack"; nothing is fetched from npm
inside the builds.

Options:
${IMAGE_HELP}
  --base IMAGE            the base of both images (default: node:26-trixie-slim, the current Node LTS)
  --codex-version V       the Codex release to install (default ${CODEX_VERSION})
  --codex-tarballs DIR    use DIR/codex.tgz (+ DIR/codex-platform.tgz) instead of npm pack
  --build-arg KEY=VALUE   passed to both builds, repeatable (e.g. PACKAGES="curl jq": added
                          to what each image always installs)
  --only gateway|codex    build one image
  --quiet                 show docker's output only on failure
  -h, --help              this help

Exit codes: 0 built; 1 a build failed; 2 usage.`;

export async function buildCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    ...imageOptions,
    base: { type: 'string' },
    'codex-version': { type: 'string' },
    'codex-tarballs': { type: 'string' },
    'build-arg': { type: 'string', multiple: true },
    only: { type: 'string' },
    quiet: { type: 'boolean' },
  });
  if (v.only !== undefined && v.only !== 'gateway' && v.only !== 'codex') throw new UsageError('--only must be gateway or codex');
  const buildArgs: Record<string, string> = {};
  for (const a of v['build-arg'] ?? []) {
    const i = a.indexOf('=');
    if (i < 1) throw new UsageError(`--build-arg must be KEY=VALUE, not "${a}"`);
    buildArgs[a.slice(0, i)] = a.slice(i + 1);
  }
  try {
    const images = await buildImages(
      {
        images: imagesFrom(v),
        base: v.base,
        codex: v['codex-tarballs'] ? { tarballs: v['codex-tarballs'] } : { version: v['codex-version'] ?? CODEX_VERSION },
        buildArgs,
        only: v.only as 'gateway' | 'codex' | undefined,
        quiet: v.quiet,
      },
      (s) => err(`codex-egress: ${s}`),
    );
    err(`codex-egress: built ${v.only ? images[v.only] : `${images.gateway} and ${images.codex}`}`);
    return EXIT.ok;
  } catch (e) {
    err(`codex-egress build: ${(e as Error).message}`);
    return EXIT.error;
  }
}
