// The long-lived ipset session behind the allow set, with the real ipset in a namespace of the test's own.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { Netns } from './harness/netns.js';
import { IpsetSession } from '../firewall/session.js';
import { ALLOW_SET } from '../firewall/rules.js';

t.test('batches apply in order, errors are reported per batch, and the session recovers', async (t) => {
  const ns = await Netns.create('ce-ips');
  t.teardown(() => ns.destroy());
  await ns.run('ipset', ['create', ALLOW_SET, 'hash:ip', 'timeout', '60', 'maxelem', '3']);
  const session = new IpsetSession(['ip', 'netns', 'exec', ns.name], 3000);
  t.teardown(() => session.close());
  const members = async () => {
    const out = (await ns.run('ipset', ['list', ALLOW_SET])).stdout;
    return out
      .split('Members:\n')[1]!
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0])
      .sort();
  };

  await session.run(`add ${ALLOW_SET} 203.0.113.1 timeout 30 -exist\nadd ${ALLOW_SET} 203.0.113.2 timeout 30 -exist\n`);
  t.same(await members(), ['203.0.113.1', '203.0.113.2'], 'the adds are in the kernel when run() resolves');

  await t.rejects(
    session.run(`add ${ALLOW_SET} 203.0.113.3 -exist\nadd ${ALLOW_SET} 203.0.113.4 -exist\n`),
    /full/i,
    'a full set rejects the batch',
  );
  await t.rejects(session.run(`add ${ALLOW_SET} 999.1.1.1\n`), /cannot parse/, "a bad line rejects with ipset's message");

  await session.run(`del ${ALLOW_SET} 203.0.113.1 -exist\n`);
  t.same(await members(), ['203.0.113.2', '203.0.113.3'], 'the session still works after errors; deletes apply');

  // Concurrent batches are serialised and each gets its own answer.
  await Promise.all([
    session.run(`del ${ALLOW_SET} 203.0.113.2 -exist\n`),
    t.rejects(session.run(`add ${ALLOW_SET} not-an-ip\n`)),
    session.run(`add ${ALLOW_SET} 203.0.113.9 -exist\n`),
  ]);
  t.same(await members(), ['203.0.113.3', '203.0.113.9']);

  // The ipset process dies: the next batch starts a new one.
  // (only processes inside this test's namespace: `ip netns pids`, never a machine-wide pkill)
  const pids = (await ns.run('ip', ['netns', 'pids', ns.name])).stdout.split('\n').filter(Boolean);
  let killed = 0;
  for (const pid of pids) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'ipset') {
      process.kill(Number(pid), 'SIGKILL');
      killed++;
    }
  }
  t.equal(killed, 1, 'the one ipset process of the session was killed');
  await new Promise((r) => setTimeout(r, 200));
  await session.run(`del ${ALLOW_SET} 203.0.113.9 -exist\n`);
  t.same(await members(), ['203.0.113.3'], 'a new ipset process took over');

  // The set disappears: the sentinel never comes, the batch fails (never reported as done).
  await ns.run('ipset', ['destroy', ALLOW_SET]);
  await t.rejects(session.run(`add ${ALLOW_SET} 203.0.113.5 -exist\n`));
});
