// Graceful stop of the real gateway, with its real firewall, in the three-namespace network
// (test/harness/topology.ts), after DNS answers were served: the allow set's `ipset -` session runs, which
// loads execa's signal-exit; with a `once` handler that re-raised SIGTERM/SIGINT and killed the gateway
// mid-stop (exit 143/130, no `stop` line). Whatever ran before, a signal stops it with exit 0, the pending
// summaries and the `stop` line flushed; a second signal during the stop changes nothing; a third exits at
// once (1) but still writes the `stop` line.
import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './harness/world.js';
import type { Proc } from './harness/netns.js';
import { closeTopology, dig, startTopology, topologyGatewayArgs, writeAllowlist, GATEWAY, WEB, type Topology } from './harness/topology.js';

interface RunningGateway {
  proc: Proc;
  auditPath: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

let topo: Topology;
let allowlistPath: string;
const running = new Set<RunningGateway>();
let started = 0;

/**
 * The gateway, without the test runner's hooks: tap puts its process-info loader into every child's
 * NODE_OPTIONS, and that loader registers signal-exit at start, before the gateway's own handler, which
 * changes the order of signal listeners and hides the bug (`env -u` drops it; env execs node, same pid).
 */
async function startGateway(): Promise<RunningGateway> {
  const auditPath = join(topo.dir, `audit-stop-${started++}.jsonl`);
  const proc = topo.gateway.spawn('env', [
    '-u',
    'NODE_OPTIONS',
    process.execPath,
    CLI,
    'gateway',
    '--audit-log',
    auditPath,
    ...topologyGatewayArgs(allowlistPath),
  ]);
  await proc.waitFor(/gateway up/);
  return { proc, auditPath, stop: (signal) => proc.stop(signal) };
}

t.before(async () => {
  topo = await startTopology();
  allowlistPath = writeAllowlist(topo.dir, ['allowed.test']);
});
t.teardown(() => closeTopology(topo, running, 'SIGKILL'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Names of the processes in the gateway's namespace (only the test's own namespace: never machine-wide). */
async function processesInGateway(): Promise<string[]> {
  const pids = String((await topo.gateway.run('ip', ['netns', 'pids', topo.gateway.name])).stdout)
    .split('\n')
    .filter(Boolean);
  return Promise.all(pids.map(async (pid) => (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim()));
}

/** A gateway that has served an allowed answer (so the ipset session runs) and has denials pending in a summary. */
async function servedGateway(t: Test): Promise<RunningGateway> {
  const gw = await startGateway();
  running.add(gw);
  const d = await dig(topo.sandbox, GATEWAY, 'allowed.test');
  t.equal(d.status, 'NOERROR');
  t.same(d.answers, [WEB]);
  t.ok((await processesInGateway()).includes('ipset'), 'the ipset session is running (first DNS answer served)');
  for (let i = 0; i < 3; i++) t.equal((await dig(topo.sandbox, GATEWAY, 'denied.test')).status, 'NXDOMAIN');
  for (let i = 0; i < 50 && !lines(gw).some((e) => e.event === 'dns' && e.name === 'denied.test'); i++) await sleep(100);
  return gw;
}

/** Every line of the log must be whole JSON (the harness's reader throws on a partial one). */
const lines = (gw: RunningGateway) =>
  readFileSync(gw.auditPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function assertFlushed(t: Test, gw: RunningGateway, signal: string) {
  const log = lines(gw);
  t.match(log.at(-1), { event: 'stop', signal }, 'the stop line is the last one');
  t.ok(
    log.some((e) => e.event === 'firewall' && e.action === 'stop' && e.rules_kept === true),
    'the firewall stop line',
  );
  t.match(
    log.at(-2),
    { event: 'repeat', of: 'dns', name: 'denied.test', decision: 'deny', count: 2 },
    'the pending repeat count, flushed just before the stop line',
  );
  t.equal(log.filter((e) => e.event === 'dns' && e.name === 'denied.test').length, 1, 'the denial itself once, in full');
}

for (const [signal, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  t.test(`${signal} after DNS answers were served: a graceful stop, exit 0 (not ${code}), everything flushed`, async (t) => {
    const gw = await servedGateway(t);
    gw.proc.child.kill(signal);
    const r = await gw.proc.child;
    running.delete(gw);
    t.equal(r.exitCode, 0, `exit code 0 (output: ${gw.proc.output().slice(-300)})`);
    t.equal(r.signal, undefined, 'not killed by the signal');
    assertFlushed(t, gw, signal);
  });

  t.test(`a second ${signal} during the stop does not cut it short`, async (t) => {
    const gw = await servedGateway(t);
    gw.proc.child.kill(signal);
    await gw.proc.waitFor(/stopping/);
    gw.proc.child.kill(signal);
    const r = await gw.proc.child;
    running.delete(gw);
    t.equal(r.exitCode, 0, `exit code 0 (output: ${gw.proc.output().slice(-300)})`);
    assertFlushed(t, gw, signal);
  });
}

t.test('a third signal stops at once, and still writes the stop line', async (t) => {
  const gw = await servedGateway(t);
  gw.proc.child.kill('SIGTERM');
  await gw.proc.waitFor(/stopping/);
  gw.proc.child.kill('SIGTERM');
  await sleep(2);
  gw.proc.child.kill('SIGTERM');
  const r = await gw.proc.child;
  running.delete(gw);
  t.equal(r.signal, undefined, 'never killed by the signal itself');
  const log = lines(gw);
  if (r.exitCode === 1) t.match(gw.proc.output(), /stopping at once/, 'forced');
  else t.equal(r.exitCode, 0, 'the graceful stop finished before the third signal was handled');
  // Forced or not, the lines buffered before the exit are in the file: the stop line last (forced: true
  // when the graceful stop had not written its own yet).
  t.match(log.at(-1), { event: 'stop', signal: 'SIGTERM' }, 'the stop line is the last one');
  t.ok(
    log.some((e) => e.event === 'repeat' && e.name === 'denied.test'),
    'pending counts flushed either way',
  );
});
