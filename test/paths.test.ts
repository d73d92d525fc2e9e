// The host's path checks (issue 10 §1): links the sandbox could plant in what it can write are never
// followed, by a bind source, a seed copy, a chown or a run file. Real files and links in a temp dir.
import t from 'tap';
import {
  mkdtempSync,
  rmSync,
  mkdirSync,
  writeFileSync,
  symlinkSync,
  existsSync,
  readFileSync,
  lstatSync,
  statSync,
  realpathSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { resolveTrusted, isWithin, createExclusive, chownTreeNoFollow, mkdirNoFollow, UnsafePathError } from '../image/paths.js';
import {
  prepareState,
  seedCodexHome,
  prepareAuthMountPoint,
  prepareSessionsMountPoint,
  checkStateOutsideWorkdir,
  statePaths,
  sandboxUser,
  sandboxWritable,
} from '../image/project.js';
import { projectFor } from '../image/names.js';
import { SignalGuard } from '../cli/common.js';

const fresh = (t: { teardown(fn: () => void): void }) => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'codex-egress-paths-')));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const w = join(dir, 'project');
  const outside = join(dir, 'outside');
  const secret = join(dir, 'secret');
  mkdirSync(join(w, 'sub', 'deep'), { recursive: true });
  mkdirSync(outside);
  mkdirSync(secret);
  writeFileSync(join(secret, 'id_rsa'), 'PRIVATE');
  return { dir, w, outside, secret };
};

t.test('isWithin compares whole components', async (t) => {
  t.ok(isWithin('/w', '/w'));
  t.ok(isWithin('/w/x', '/w'));
  t.notOk(isWithin('/w2', '/w'), '/w2 is not inside /w');
  t.notOk(isWithin('/', '/w'));
  t.ok(isWithin('/anything', '/'));
});

t.test('resolveTrusted: real paths pass, any link inside the workdir is refused with its name', async (t) => {
  const { dir, w, outside, secret } = fresh(t);
  const o = { untrusted: [w], what: '--read-only' };
  t.equal(resolveTrusted(join(w, 'sub', 'deep'), o), join(w, 'sub', 'deep'), 'a real directory');
  t.equal(resolveTrusted('sub/deep', { ...o, cwd: w }), join(w, 'sub', 'deep'), 'relative to cwd');
  t.equal(resolveTrusted(`${w}/sub/../sub`, o), join(w, 'sub'), '.. without links');
  t.equal(resolveTrusted(outside, o), outside, 'outside the workdir');

  symlinkSync(secret, join(w, 'abs-link'));
  symlinkSync('../secret', join(w, 'rel-link'));
  symlinkSync(join(dir, 'nowhere'), join(w, 'dangling'));
  symlinkSync(secret, join(w, 'sub', 'nested-link'));
  symlinkSync(join(w, 'sub'), join(w, 'inner-link'));
  const refused = (path: string, name: string, why: string) =>
    t.throws(
      () => resolveTrusted(path, o),
      { name: 'UnsafePathError', message: new RegExp(`${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is a symbolic link inside`) },
      why,
    );
  refused(join(w, 'abs-link'), join(w, 'abs-link'), 'absolute link');
  refused(join(w, 'rel-link'), join(w, 'rel-link'), 'relative link');
  refused(join(w, 'dangling'), join(w, 'dangling'), 'dangling link');
  refused(join(w, 'sub', 'nested-link'), join(w, 'sub', 'nested-link'), 'link deeper down');
  refused(join(w, 'abs-link', 'id_rsa'), join(w, 'abs-link'), 'a link in a parent');
  refused(join(w, 'inner-link'), join(w, 'inner-link'), 'even a link that stays inside the workdir');
  refused(`${w}/rel-link/../project`, join(w, 'rel-link'), 'link/.. is not taken lexically');
  t.throws(() => resolveTrusted(join(w, 'missing'), o), /does not exist/, 'missing');
  t.equal(resolveTrusted(join(w, 'missing'), { ...o, mayNotExist: true }), join(w, 'missing'), 'mayNotExist: the last component only');
  t.throws(() => resolveTrusted(join(w, 'missing', 'x'), { ...o, mayNotExist: true }), /does not exist/);

  // The user's own link outside is followed; where it leads is checked like any other path.
  symlinkSync(join(w, 'sub'), join(outside, 'to-sub'));
  t.equal(resolveTrusted(join(outside, 'to-sub', 'deep'), o), join(w, 'sub', 'deep'), "the user's link outside is followed");
  symlinkSync(join(w, 'abs-link'), join(outside, 'to-link'));
  refused(join(outside, 'to-link'), join(w, 'abs-link'), 'a link outside leading to a link inside');
  symlinkSync('loop-b', join(outside, 'loop-a'));
  symlinkSync('loop-a', join(outside, 'loop-b'));
  t.throws(() => resolveTrusted(join(outside, 'loop-a'), o), /too many symbolic links/);
  t.throws(() => resolveTrusted('', o), UnsafePathError);
});

t.test('state directory: never inside the workdir, nor the workdir inside it', async (t) => {
  const { dir, w } = fresh(t);
  const p = projectFor(w);
  t.doesNotThrow(() => checkStateOutsideWorkdir(p, statePaths(p, { CODEX_EGRESS_STATE_DIR: join(dir, 'state') })));
  t.throws(() => checkStateOutsideWorkdir(p, statePaths(p, { CODEX_EGRESS_STATE_DIR: join(w, '.state') })), /inside the workdir/);
  t.throws(
    () => checkStateOutsideWorkdir(p, statePaths(p, { CODEX_EGRESS_STATE_DIR: join(w, 'not', 'yet') })),
    /inside the workdir/,
    'not created yet',
  );
  symlinkSync(join(w, 'sub'), join(dir, 'state-link'));
  t.throws(
    () => checkStateOutsideWorkdir(p, statePaths(p, { CODEX_EGRESS_STATE_DIR: join(dir, 'state-link') })),
    /inside the workdir/,
    'through a link',
  );
  t.throws(() => checkStateOutsideWorkdir(p, statePaths(p, { CODEX_EGRESS_STATE_DIR: dir })), /inside the state directory/);
  const s = statePaths(p, { CODEX_EGRESS_STATE_DIR: join(dir, 'state') });
  t.notOk(isWithin(s.codexHome, w), 'the Codex home is not in the workdir');
  t.notOk(isWithin(s.runs, w), 'exec runs are not in the workdir');
  t.same(sandboxWritable(p, s), [w], 'what the sandbox writes (the Codex home once it exists)');
});

t.test('files the host creates: never through a link, never over an existing name', async (t) => {
  const { w, secret } = fresh(t);
  symlinkSync(join(secret, 'new-file'), join(w, 'dangling'));
  await t.rejects(createExclusive(join(w, 'dangling'), 'x'), { code: 'EEXIST' }, 'a dangling link is not written through');
  t.notOk(existsSync(join(secret, 'new-file')), 'its target was not created');
  symlinkSync(join(secret, 'id_rsa'), join(w, 'existing'));
  await t.rejects(createExclusive(join(w, 'existing'), 'x'), { code: 'EEXIST' });
  t.equal(readFileSync(join(secret, 'id_rsa'), 'utf8'), 'PRIVATE', 'target untouched');
  await createExclusive(join(w, 'new'), 'ok');
  t.equal(readFileSync(join(w, 'new'), 'utf8'), 'ok');
  symlinkSync(secret, join(w, 'dir-link'));
  await t.rejects(mkdirNoFollow(join(w, 'dir-link', 'x'), w), /is a symbolic link/, 'mkdir -p refuses a link on the way');
  t.notOk(existsSync(join(secret, 'x')));
  t.equal(
    await mkdirNoFollow(join(w, 'dir-link', 'y'), join(w, 'dir-link')),
    join(w, 'dir-link', 'y'),
    "the base is the user's: a link there is followed",
  );
  t.ok(existsSync(join(secret, 'y')));
});

t.test('seeding the Codex home never follows what the sandbox left in it', async (t) => {
  const { dir, secret } = fresh(t);
  const home = join(dir, 'home');
  mkdirSync(join(home, '.codex', 'prompts'), { recursive: true });
  writeFileSync(join(home, '.codex', 'config.toml'), 'model = "x"\n');
  writeFileSync(join(home, '.codex', 'prompts', 'p.md'), 'prompt');
  const codexHome = join(dir, 'state', 'codex-home');
  mkdirSync(codexHome, { recursive: true });
  symlinkSync(join(secret, 'bashrc'), join(codexHome, 'config.toml')); // dangling: a copy would create it
  symlinkSync(secret, join(codexHome, 'prompts'));
  const seeded = await seedCodexHome(codexHome, {}, home, { untrusted: [codexHome] });
  t.same(seeded, [], 'nothing written');
  t.notOk(existsSync(join(secret, 'bashrc')), 'config.toml not copied through the link');
  t.notOk(existsSync(join(secret, 'p.md')), 'prompts not copied into a linked directory');
  t.ok(lstatSync(join(codexHome, 'config.toml')).isSymbolicLink(), "the sandbox's link is left as it is");
});

t.test('the auth.json mount point: a link is replaced by a plain empty file', async (t) => {
  const { dir, secret } = fresh(t);
  const codexHome = join(dir, 'codex-home');
  mkdirSync(codexHome);
  symlinkSync(join(secret, 'id_rsa'), join(codexHome, 'auth.json'));
  await prepareAuthMountPoint(codexHome, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }, true);
  const st = lstatSync(join(codexHome, 'auth.json'));
  t.ok(st.isFile() && !st.isSymbolicLink() && st.size === 0, 'a regular empty file');
  t.equal(readFileSync(join(secret, 'id_rsa'), 'utf8'), 'PRIVATE');
  await prepareAuthMountPoint(codexHome, { uid: 0, gid: 0 }, false);
  t.notOk(existsSync(join(codexHome, 'auth.json')), 'without an auth file the empty mount point goes');
  symlinkSync(join(secret, 'id_rsa'), join(codexHome, 'auth.json'));
  await prepareAuthMountPoint(codexHome, { uid: 0, gid: 0 }, false);
  t.notOk(
    existsSync(join(codexHome, 'auth.json')) || lstatSync(join(codexHome, 'auth.json'), { throwIfNoEntry: false }),
    'without an auth file a planted auth.json link goes too (Codex would read through it)',
  );
  t.equal(readFileSync(join(secret, 'id_rsa'), 'utf8'), 'PRIVATE');
});

t.test('ATTACK (sessions mount point): a sessions link left in the Codex home never redirects the --sessions-path mount', async (t) => {
  // Docker resolves a mount destination inside the container, following links: a link
  // <codex home>/sessions -> /usr/local/bin puts the sessions directory (which the sandbox writes) over
  // the image's /usr/local/bin, and the user fix `docker exec -u 0:0 … node` runs the sandbox's `node`
  // as root (seen with docker 20.10: a script named node in the sessions directory printed uid 0).
  const { dir, secret } = fresh(t);
  const codexHome = join(dir, 'codex-home');
  mkdirSync(codexHome);
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  for (const target of ['/usr/local/bin', '/etc', secret, 'auth.json']) {
    rmSync(join(codexHome, 'sessions'), { recursive: true, force: true });
    symlinkSync(target, join(codexHome, 'sessions'));
    await prepareSessionsMountPoint(codexHome, me, true);
    const st = lstatSync(join(codexHome, 'sessions'));
    t.ok(st.isDirectory() && !st.isSymbolicLink(), `a link to ${target} is replaced by a real directory`);
  }
  rmSync(join(codexHome, 'sessions'), { recursive: true, force: true });
  writeFileSync(join(codexHome, 'sessions'), 'a file in its place');
  await prepareSessionsMountPoint(codexHome, me, true);
  t.ok(lstatSync(join(codexHome, 'sessions')).isDirectory(), 'a file in its place too');
  writeFileSync(join(codexHome, 'sessions', 'kept.jsonl'), '{}');
  await prepareSessionsMountPoint(codexHome, me, true);
  t.ok(existsSync(join(codexHome, 'sessions', 'kept.jsonl')), 'a real directory is left as it is');
  t.same(readFileSync(join(secret, 'id_rsa'), 'utf8'), 'PRIVATE', 'nothing followed');
});

t.test('chown of the Codex home: lchown, never through a link', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const { dir, secret } = fresh(t);
  const codexHome = join(dir, 'codex-home');
  mkdirSync(join(codexHome, 'sessions'), { recursive: true });
  writeFileSync(join(codexHome, 'sessions', 'a.jsonl'), '{}');
  symlinkSync(join(secret, 'id_rsa'), join(codexHome, 'file-link'));
  symlinkSync(secret, join(codexHome, 'dir-link'));
  const changed = await chownTreeNoFollow(codexHome, 4321, 4322);
  t.ok(changed >= 5);
  t.equal(statSync(join(codexHome, 'sessions', 'a.jsonl')).uid, 4321, 'real files are given to the sandbox user');
  t.equal(lstatSync(join(codexHome, 'file-link')).uid, 4321, 'the link itself');
  t.equal(statSync(join(secret, 'id_rsa')).uid, 0, 'not the file it points to');
  t.equal(statSync(secret).uid, 0, 'not the directory it points to');
});

t.test(
  'ATTACK (chown depth): a tree deeper than PATH_MAX in the Codex home does not stop `up`',
  { skip: process.getuid?.() !== 0 && 'needs root' },
  async (t) => {
    // The sandbox can build it with relative mkdir/chdir; lstat of its full name fails ENAMETOOLONG, and
    // every later `up` as root failed at giveCodexHome. What lies that deep is the sandbox's own.
    const { dir } = fresh(t);
    const codexHome = join(dir, 'codex-home');
    mkdirSync(codexHome);
    writeFileSync(join(codexHome, 'config.toml'), 'x');
    const cwd = process.cwd();
    try {
      process.chdir(codexHome);
      for (let i = 0; i < 25; i++) {
        mkdirSync('d'.repeat(200));
        process.chdir('d'.repeat(200));
      }
      writeFileSync('deep', 'x');
    } finally {
      process.chdir(cwd);
    }
    try {
      await t.resolves(chownTreeNoFollow(codexHome, 4321, 4322), 'no ENAMETOOLONG');
      t.equal(statSync(join(codexHome, 'config.toml')).uid, 4321, 'what can be named is given to the sandbox user');
      t.equal(statSync(codexHome).uid, 4321);
    } finally {
      spawnSync('rm', ['-rf', join(codexHome, 'd'.repeat(200))]); // rmSync cannot name it either
    }
  },
);

t.test(
  'ATTACK (state links, second stage): a `logs` link the gateway could plant in its state directory is not chmodded through',
  async (t) => {
    // The gateway has <state>/<project> read-write (root with the host user's group): after a compromise
    // of the gateway it could replace logs/ with a link, and the host's chmod 0770 at the next up/allow
    // followed it (e.g. to /etc/shadow).
    const { dir, secret } = fresh(t);
    const paths = statePaths(projectFor(join(dir, 'project')), { CODEX_EGRESS_STATE_DIR: join(dir, 'state') });
    await prepareState(paths);
    rmSync(paths.logDir, { recursive: true });
    chmodSync(secret, 0o700); // a directory such as /root/.ssh
    symlinkSync(secret, paths.logDir);
    await t.rejects(prepareState(paths), { name: 'UnsafePathError', message: /logs is a symbolic link/ }, 'refused, naming it');
    t.equal(statSync(secret).mode & 0o777, 0o700, 'the target keeps its mode');
  },
);

t.test('sandbox user: the workdir owner, root only when asked', async (t) => {
  t.same(sandboxUser({ uid: 1234, gid: 99 }), { uid: 1234, gid: 99, source: 'workdir-owner' });
  t.throws(() => sandboxUser({ uid: 0, gid: 0 }), /owned by root[^]*--user/, 'a root-owned workdir is refused');
  t.same(sandboxUser({ uid: 0, gid: 0 }, '0'), { uid: 0, gid: 0, source: 'flag' }, 'explicit root');
  t.same(sandboxUser({ uid: 0, gid: 0 }, 'root'), { uid: 0, gid: 0, source: 'flag' });
  t.same(sandboxUser({ uid: 1234, gid: 99 }, '2000'), { uid: 2000, gid: 99, source: 'flag' });
  t.same(sandboxUser({ uid: 1234, gid: 99 }, '2000:3000'), { uid: 2000, gid: 3000, source: 'flag' });
  t.throws(() => sandboxUser({ uid: 1, gid: 1 }, 'alice'), /UID\[:GID\]/);
  t.throws(() => sandboxUser({ uid: 1, gid: 1 }, '1:-1'), /UID\[:GID\]/);
});

t.test('signals during cleanup: two are ignored with a message, the third aborts saying what is left', async (t) => {
  const exit = process.exit;
  const write = process.stderr.write;
  let stderr = '';
  let exited: number | undefined;
  process.exit = ((c?: number) => {
    exited = c;
  }) as typeof process.exit;
  process.stderr.write = ((c: string) => ((stderr += c), true)) as typeof process.stderr.write;
  const before = process.listenerCount('SIGINT');
  const g = new SignalGuard(() => 'container X');
  try {
    process.emit('SIGINT', 'SIGINT');
    t.equal(exited, undefined, 'attached: ignored silently');
    t.equal(stderr, '');
    g.cleanup();
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGINT', 'SIGINT');
    t.equal(exited, undefined, 'two signals during cleanup: still running');
    t.match(stderr, /please wait/);
    process.emit('SIGTERM', 'SIGTERM');
    t.equal(exited, 143, 'the third aborts');
    t.match(stderr, /left behind: container X[^]*codex-egress down/);
  } finally {
    g.release();
    process.exit = exit;
    process.stderr.write = write;
  }
  t.equal(process.listenerCount('SIGINT'), before, 'released');
});
