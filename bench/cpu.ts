// CPU time a process has used (user + system, every thread), from /proc/PID/stat. On a shared machine a
// throughput figure moves with whatever else runs; the CPU a proxy spends per unit of work (per GB
// relayed, per 1,000 tunnels, per 1,000 requests) moves much less, so each scenario reports both.
import { readFileSync } from 'node:fs';
import type { Env, ProxyPeer } from './env.js';
import { OURS } from './table.js';

/** Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on Linux). */
const TICKS = 100;

/** CPU milliseconds `pid` has used so far (10 ms resolution). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS;
}

/** The pid of a proxy under test by its column name (undefined for "direct"). */
export function proxyPid(env: Env, name: string): number | undefined {
  if (name === OURS) return env.gateway.pid;
  return env.peers.proxy[name as ProxyPeer]?.pid;
}

/** Run `fn` and return its result with the CPU ms the proxy `name` used meanwhile (NaN for direct). */
export async function withCpu<T>(env: Env, name: string, fn: () => Promise<T>): Promise<{ r: T; cpu: number }> {
  const pid = proxyPid(env, name);
  const before = pid ? cpuMs(pid) : NaN;
  const r = await fn();
  return { r, cpu: pid ? cpuMs(pid) - before : NaN };
}
