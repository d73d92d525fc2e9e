// Presets: named sets of rules for a first start (`up --preset NAME`, `gateway --preset NAME`), their own
// source ("preset") in the effective allowlist. `locked` is the OpenAI defaults only (no rule of its own);
// `dev` adds the package registries and source hosts a coding agent commonly needs. Deny rules (`!rule`
// in the file) still win over every preset rule. One entry per line, each with why it is there.
export const PRESETS = {
  locked: [],
  dev: [
    'registry.npmjs.org', // npm: package metadata and tarballs
    'registry.yarnpkg.com', // Yarn's mirror of the npm registry
    'pypi.org', // PyPI: the package index (simple API, JSON API)
    'files.pythonhosted.org', // PyPI: the package files themselves
    'crates.io', // Rust: the crate index API
    'index.crates.io', // Rust: the sparse index cargo reads
    'static.crates.io', // Rust: the crate files
    'proxy.golang.org', // Go: the module proxy
    'sum.golang.org', // Go: the checksum database the go command verifies modules against
    'rubygems.org', // Ruby: gems
    'repo.maven.apache.org', // Java: Maven Central
    'repo1.maven.org', // Java: Maven Central's other name
    'github.com', // GitHub: git over HTTPS, the web pages
    'api.github.com', // GitHub: the REST and GraphQL API (gh, release look-ups)
    'codeload.github.com', // GitHub: archive downloads (tarballs of a tag or commit)
    'objects.githubusercontent.com', // GitHub: release assets and LFS objects
    'gitlab.com', // GitLab: git over HTTPS and its API
    'bitbucket.org', // Bitbucket: git over HTTPS
    'deb.debian.org', // Debian packages (apt inside the sandbox)
    'security.debian.org', // Debian security updates
  ],
} as const satisfies Record<string, readonly string[]>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];
export const isPresetName = (s: string): s is PresetName => (PRESET_NAMES as string[]).includes(s);
