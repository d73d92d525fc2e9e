// ATTACK19 (a re-attack of a4705e9), finding F2 (low), fixed: the allowlist path as a symlink whose
// target goes away was read as "no file", an empty list: the file's deny rules stopped applying while
// the path was still there (fail open). A dangling link is now a rejected reload (the rules stay), like
// a link to a directory, a loop or an unreadable file (watch-file.ts readOnce).
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, mkdirSync, unlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startFileGateway } from './harness/file-gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const kind of ['dangling link (finding)', 'link to a directory (control)', 'link loop (control)'] as const) {
  t.test(`allowlist path becomes a ${kind}: the file's deny rule stays in force`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'a19-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'allowed_domains.txt');
    const real = join(dir, 'real.txt');
    writeFileSync(real, '!bad.a.test\n');
    symlinkSync(real, file);
    const g = await startFileGateway(file, ['.a.test']);
    t.teardown(() => g.stop());
    const rules = () => g.allowlist().rules.map((r) => r.text);
    t.same(rules(), ['.a.test', '!bad.a.test']);
    t.equal(g.allowlist().decide('bad.a.test', 'dns').allow, false, 'bad.a.test denied by the file');
    if (kind.startsWith('dangling'))
      unlinkSync(real); // e.g. the target's checkout/deploy is replaced
    else if (kind.startsWith('link to a directory')) {
      unlinkSync(real);
      mkdirSync(real);
    } else {
      unlinkSync(file);
      symlinkSync(file, file + '.tmp');
      renameSync(file + '.tmp', file); // file -> file
    }
    await sleep(1600); // event + a poll
    t.comment(`rules now: ${JSON.stringify(rules())}`);
    t.equal(g.allowlist().decide('bad.a.test', 'dns').allow, false, 'bad.a.test still denied');
  });
}
