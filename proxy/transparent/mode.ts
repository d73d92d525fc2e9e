// Transparent mode, wired: the pool (pure), its local route (the one side effect), its listeners, and
// what a reload and a stop do to them. The gateway calls these four functions and nothing else.
import { allowedPorts } from '../../firewall/rules.js';
import type { Audit } from '../audit.js';
import { ConfigError, type GatewayConfig } from '../config.js';
import type { ProxyServer } from '../http/proxy.js';
import type { Allowlist } from '../policy/allowlist.js';
import { startTransparent } from './listener.js';
import { Pool, poolFor, type Assignment, type PoolOptions } from './pool.js';
import { installPoolRoute } from './route.js';
import type { Report } from '../report.js';

export interface TransparentMode {
  assign(name: string, ttl: number): Assignment;
  /** A reload: release the addresses of names no longer allowed (returned as `ip=name`), follow the ports. */
  reload(next: Allowlist): Promise<string[]>;
  status(): { pool: string; size: number; used: number; ports: number[] };
  close(): Promise<void>;
}

export async function startTransparentMode(
  cfg: GatewayConfig,
  allowlist: Allowlist,
  proxy: Pick<ProxyServer, 'transparent'>,
  audit: Audit,
  report: Report,
  opts: PoolOptions = {},
): Promise<TransparentMode> {
  const p = poolFor(cfg);
  if (!p) throw new ConfigError(['transparent mode is off']);
  if (!p.ok) throw new ConfigError([p.error]);
  const pool = new Pool(p.addresses, opts);
  const removeRoute = await installPoolRoute(p.cidr);
  let listeners;
  try {
    listeners = await startTransparent(pool, allowedPorts(allowlist), proxy, audit, report);
  } catch (err) {
    await removeRoute();
    throw err;
  }
  const l = listeners;
  return {
    assign: (name, ttl) => pool.assign(name, ttl),
    reload: async (next) => {
      const released = pool.release((name) => !next.decide(name, 'dns').allow);
      // A port that cannot be listened on (another socket holds it) is said, never fatal: the new policy stays
      // in force, and a connection to that port finds no listener (refused).
      await l.setPorts(allowedPorts(next)).catch((err: Error) => report(err.message));
      return released.map((r) => `${r.ip}=${r.name}`);
    },
    status: () => ({ pool: p.cidr, size: pool.size, used: pool.entries().length, ports: l.ports() }),
    close: async () => {
      await l.close();
      await removeRoute();
    },
  };
}
