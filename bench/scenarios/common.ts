// What every scenario gets: the world, the preset durations, and the proxies/DNS servers under test.
import type { Env, ProxyPeer, DnsPeer } from '../env.js';
import { LISTEN, PORTS } from '../env.js';
import { OURS } from '../table.js';
import { median } from '../stats.js';

export interface Preset {
  name: 'smoke' | 'default' | 'full';
  bulkBytes: number;
  bulkReps: number;
  /** One measured round of a connect point (per path). */
  connectMs: number;
  concurrency: number[];
  /** One measured round of an HTTP point (per path). */
  httpSeconds: number;
  /** Measured rounds of each connect and HTTP point, every path in turn (see `interleaved`). */
  rounds: number;
  /** Unmeasured load on each path before its first round (ms). */
  warmMs: number;
  dnsSeconds: number;
  mixedSeconds: number;
  idleTunnels: number;
  scaleSizes: number[];
  fwSamples: number;
  /** Names (each a new address) asked through the gateway with --firewall, at most 762. */
  fwNames: number;
}

export const PRESETS: Record<Preset['name'], Preset> = {
  smoke: {
    name: 'smoke',
    bulkBytes: 64 << 20,
    bulkReps: 1,
    connectMs: 500,
    concurrency: [1, 64],
    httpSeconds: 1,
    rounds: 1,
    warmMs: 0,
    dnsSeconds: 1,
    mixedSeconds: 2,
    idleTunnels: 100,
    scaleSizes: [10, 1000],
    fwSamples: 50,
    fwNames: 100,
  },
  default: {
    name: 'default',
    bulkBytes: 256 << 20,
    bulkReps: 5,
    connectMs: 2000,
    concurrency: [1, 64, 512],
    httpSeconds: 3,
    rounds: 3,
    warmMs: 2000,
    dnsSeconds: 5,
    mixedSeconds: 20,
    idleTunnels: 1000,
    scaleSizes: [10, 1000, 100_000],
    fwSamples: 500,
    fwNames: 762,
  },
  full: {
    name: 'full',
    bulkBytes: 1 << 30,
    bulkReps: 3,
    connectMs: 5000,
    concurrency: [1, 64, 512],
    httpSeconds: 5,
    rounds: 5,
    warmMs: 5000,
    dnsSeconds: 10,
    mixedSeconds: 120,
    idleTunnels: 1000,
    scaleSizes: [10, 1000, 100_000],
    fwSamples: 2000,
    fwNames: 762,
  },
};

export interface Ctx {
  env: Env;
  preset: Preset;
  log(msg: string): void;
}

/** The proxies under test, ours first, as "IP:PORT" for the load generators. */
export function proxies(env: Env): Array<{ name: string; via: string }> {
  const list = [{ name: OURS, via: `${LISTEN}:${PORTS.gatewayProxy}` }];
  for (const p of ['squid', 'tinyproxy', 'node-min'] as ProxyPeer[])
    if (env.peers.proxy[p]) list.push({ name: p, via: `${LISTEN}:${PORTS[p]}` });
  return list;
}

export function dnsServers(env: Env): Array<{ name: string; port: number }> {
  const list = [{ name: OURS, port: PORTS.gatewayDns }];
  for (const p of ['dnsmasq', 'unbound'] as DnsPeer[]) if (env.peers.dns[p]) list.push({ name: p, port: PORTS[p] });
  return list;
}

/**
 * Measure every path `rounds` times, in turn (A B C, A B C, …), after an unmeasured warm-up of each: a
 * slow moment of this shared machine then falls on every column alike rather than on one, and a
 * runtime's first seconds (a JIT's warm-up) are not counted against it. Returns each path's rounds.
 */
export async function interleaved<P extends { name: string }, T>(
  paths: readonly P[],
  preset: Pick<Preset, 'rounds' | 'warmMs'>,
  warm: (p: P, ms: number) => Promise<unknown>,
  measure: (p: P) => Promise<T>,
): Promise<Record<string, T[]>> {
  const out: Record<string, T[]> = {};
  for (const p of paths) {
    out[p.name] = [];
    if (preset.warmMs > 0) await warm(p, preset.warmMs);
  }
  for (let i = 0; i < preset.rounds; i++) for (const p of paths) out[p.name]!.push(await measure(p));
  return out;
}

/** Each path's median of `f` over its rounds (null where `f` is: "direct" has no proxy CPU). */
export function medians<T>(rounds: Record<string, T[]>, f: (x: T) => number | null): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(rounds).map(([k, xs]) => {
      const v = xs.map(f);
      return [k, v.some((x) => x === null) ? null : median(v as number[])];
    }),
  );
}

export const roundsNote = (preset: Pick<Preset, 'rounds' | 'warmMs'>): string =>
  `Each figure is the median of ${preset.rounds} round${preset.rounds === 1 ? '' : 's'} per path, the paths taking turns${preset.warmMs > 0 ? `, after ${preset.warmMs / 1000} s of unmeasured load on each` : ''}.`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
