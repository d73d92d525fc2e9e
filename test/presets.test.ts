// Presets (proxy/policy/presets.ts): `locked` is the defaults only, `dev` adds registries and source hosts
// as their own source ("preset"); a deny rule wins over a preset rule; an unknown name is a one-line usage
// error; up passes --preset to the gateway.
import t from 'tap';
import { execa } from 'execa';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { CLI, tempDir } from './harness/world.js';
import { mergeSources } from '../proxy/policy/allowlist.js';
import { parseRuleFile } from '../proxy/policy/rules.js';
import { PRESETS } from '../proxy/policy/presets.js';
import { defaultConfig, parseConfig, loadAllowlist } from '../proxy/config.js';
import { gatewayCommandArgs } from '../image/args.js';
import { projectFor } from '../image/names.js';

const merged = (preset: 'locked' | 'dev' | undefined, file = '') => {
  const r = mergeSources({ defaults: true, preset, flags: [], file: parseRuleFile(file, 'allowed_domains.txt') });
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.allowlist;
};

t.test('dev adds its rules as source "preset"; locked adds none; deny wins', async (t) => {
  t.equal(merged('locked').rules.length, merged(undefined).rules.length, 'locked: the defaults only');
  const dev = merged('dev');
  t.equal(dev.rules.filter((r) => r.source === 'preset').length, PRESETS.dev.length, 'every dev entry is a valid rule');
  for (const [host, via, port] of [
    ['registry.npmjs.org', 'connect', 443],
    ['REGISTRY.npmjs.org.', 'dns', undefined],
    ['pypi.org', 'connect', 443],
    ['proxy.golang.org', 'dns', undefined],
    ['github.com', 'http', 80],
  ] as const) {
    const d = dev.decide(host, via, port);
    t.match(d, { allow: true, rule: { source: 'preset', origin: '--preset dev' } }, `${host} ${via}`);
  }
  t.notOk(merged('locked').decide('registry.npmjs.org', 'dns').allow, 'locked: not the registries');
  t.notOk(dev.decide('evil.npmjs.org', 'dns').allow, 'exact rules: not their subdomains');
  t.notOk(dev.decide('registry.npmjs.org', 'connect', 8443).allow, 'nor another port');
  const denied = merged('dev', '!registry.npmjs.org\n!.github.com\n');
  t.match(
    denied.decide('registry.npmjs.org', 'connect', 443),
    { allow: false, reason: 'denied-by-rule' },
    'a deny rule wins over the preset',
  );
  t.match(denied.decide('GitHub.com', 'dns'), { allow: false, reason: 'denied-by-rule' }, 'in any spelling');
  t.ok(denied.decide('pypi.org', 'dns').allow, 'the rest of the preset stays');
});

t.test('the gateway configuration carries the preset into the effective allowlist', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const allowlistPath = join(dir.path, 'allowed_domains.txt');
  writeFileSync(allowlistPath, '!pypi.org\n');
  const cfg = parseConfig({ ...defaultConfig(), envAllowed: undefined, upstreams: ['198.51.100.53'], allowlistPath, preset: 'dev' });
  const a = await loadAllowlist(cfg);
  t.ok(a.rules.some((r) => r.text === 'crates.io' && r.source === 'preset'));
  t.notOk(a.decide('pypi.org', 'dns').allow, "the file's deny still wins");
  t.throws(
    () => parseConfig({ ...defaultConfig(), upstreams: ['198.51.100.53'], preset: 'open' as 'dev' }),
    'an unknown preset is refused',
  );
  const args = gatewayCommandArgs(projectFor(dir.path), {
    image: 'x',
    allowlistDir: dir.path,
    logDir: dir.path,
    firewall: true,
    gid: 0,
    preset: 'dev',
  });
  t.match(args.join(' '), /--preset dev/, 'up passes it to the gateway');
  t.notMatch(
    gatewayCommandArgs(projectFor(dir.path), { image: 'x', allowlistDir: dir.path, logDir: dir.path, firewall: true, gid: 0 }).join(' '),
    /--preset/,
  );
});

t.test('an unknown preset: one line, exit 2 (gateway and up)', async (t) => {
  for (const args of [
    ['gateway', '--no-firewall', '--preset', 'open'],
    ['up', '--preset', 'Dev'],
  ]) {
    const r = await execa(process.execPath, [CLI, ...args], {
      reject: false,
      timeout: 30_000,
      env: { CODEX_EGRESS_DOCKER: '/nonexistent-docker' },
    });
    t.equal(r.exitCode, 2, args.join(' '));
    t.match(r.stderr, /^codex-egress (gateway|up): --preset must be one of locked, dev, not "(open|Dev)"$/, args.join(' '));
  }
});
