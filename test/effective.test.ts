// The effective allowlist file, stated once (proxy/effective.ts): its path, and a reader that refuses
// links, non-files and anything not in its format with a clear error (the CLI reads it from a directory
// it shares with the gateway container). In process, a temporary directory.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { effectivePath, readEffective, writeEffective } from '../proxy/effective.js';
import { mergeSources } from '../proxy/policy/allowlist.js';

const dir = mkdtempSync(join(tmpdir(), 'codex-egress-effective-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the path beside the allowlist file', async (t) => {
  t.equal(effectivePath('/etc/codex/allowed_domains.txt'), '/etc/codex/allowed_domains.effective.json');
  t.equal(effectivePath('/x/rules'), '/x/rules.effective.json');
});

t.test('what the gateway writes, the reader reads back; a missing file is undefined', async (t) => {
  const m = mergeSources({ defaults: true, flags: ['github.com'] });
  if (!m.ok) throw new Error('rules');
  const path = await writeEffective(join(dir, 'allowed_domains.txt'), m.allowlist);
  const r = await readEffective(path);
  t.same(
    r?.rules.map((x) => [x.rule, x.source]),
    [...m.allowlist.rules.map((x) => [x.text, x.source])],
  );
  t.equal(await readEffective(join(dir, 'none.effective.json')), undefined);
});

t.test('links, directories, garbage and other shapes are refused with a clear error', async (t) => {
  const target = join(dir, 'secret');
  writeFileSync(target, JSON.stringify({ generated: 'x', rules: [] }));
  const link = join(dir, 'link.effective.json');
  symlinkSync(target, link);
  const sub = join(dir, 'sub.effective.json');
  mkdirSync(sub);
  const cases: Array<[string, string, RegExp]> = [
    ['a symbolic link', link, /symbolic link, not followed/],
    ['a directory', sub, /not a regular file/],
  ];
  for (const [name, body, want] of [
    ['not JSON', '{"rules": [', /not JSON/],
    ['no rules', '{"generated": "x"}', /not an effective allowlist/],
    [
      'a rule of another shape',
      '{"generated": "x", "rules": [{"rule": 1, "source": "flag", "origin": "o"}]}',
      /not an effective allowlist/,
    ],
    [
      'an unknown source',
      '{"generated": "x", "rules": [{"rule": "a.test", "source": "sandbox", "origin": "o"}]}',
      /not an effective allowlist/,
    ],
  ] as const) {
    const p = join(dir, `${name.replace(/ /g, '-')}.effective.json`);
    writeFileSync(p, body);
    cases.push([name, p, want]);
  }
  for (const [name, path, want] of cases) {
    await t.rejects(readEffective(path), { name: 'EffectiveFileError', code: 'ERR_EFFECTIVE_ALLOWLIST', message: want }, name);
  }
});
