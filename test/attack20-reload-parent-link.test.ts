// ATTACK20 (a re-attack of fda4e21), finding F3 (low, the ATTACK19 F2 class), fixed: the allowlist
// path's parent directory as a symlink whose target is gone read as "no file", dropping the file's deny
// rules. "Missing" now needs the path's directory to exist; otherwise it is a rejected reload and the
// rules in force stay (proxy/watch-file.ts readOnce).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readOnce } from '../proxy/watch-file.js';

t.test('a dangling link as the allowlist file (control) and as its directory (finding)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'a20w-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // control: the file is the dangling link (ATTACK19 F2: an error)
  symlinkSync(join(dir, 'gone.txt'), join(dir, 'allowed_domains.txt'));
  const control = await readOnce(join(dir, 'allowed_domains.txt'));
  t.ok('error' in control, `file as dangling link: ${JSON.stringify(control)}`);
  // finding: the directory is the dangling link (its target, a real config dir, was there a moment ago)
  const real = join(dir, 'conf.real');
  mkdirSync(real);
  writeFileSync(join(real, 'allowed_domains.txt'), '!bad.a.test\n');
  symlinkSync(join(dir, 'conf.gone'), join(dir, 'conf'));
  const r = await readOnce(join(dir, 'conf', 'allowed_domains.txt'));
  t.notOk('missing' in r, `directory as dangling link: ${JSON.stringify(r)} (missing = the file's deny rules dropped)`);
});
