// What every scenario gets: the world, the preset durations, and the proxies/DNS servers under test.
import type { Env, ProxyPeer, DnsPeer } from '../env.js';
import { LISTEN, PORTS } from '../env.js';
import { OURS } from '../table.js';

export interface Preset {
  name: 'smoke' | 'default' | 'full';
  bulkBytes: number;
  bulkReps: number;
  connectMs: number;
  concurrency: number[];
  httpSeconds: number;
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
    bulkReps: 3,
    connectMs: 4000,
    concurrency: [1, 64, 512],
    httpSeconds: 5,
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
    connectMs: 10_000,
    concurrency: [1, 64, 512],
    httpSeconds: 10,
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
