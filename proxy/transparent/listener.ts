// Transparent mode's listeners: one TCP server per pool address and allowed port. A connection to pool
// address A on port P is a tunnel to the name A stands for, on P — handed to the proxy's CONNECT path
// (admit, dial, first-bytes check, audit, revocation). A stands for nothing (never given out, expired,
// released by a reload): refused, audited. Only TCP: UDP to the pool is rejected by the firewall.
import net from 'node:net';
import type { Audit } from '../audit.js';
import type { ProxyServer } from '../http/proxy.js';
import type { Pool } from './pool.js';
import type { Report } from '../report.js';

export interface TransparentListeners {
  /** The ports listened on now. */
  ports(): number[];
  /** Listen on exactly these ports (a reload changed the allowlist's ports). */
  setPorts(ports: readonly number[]): Promise<void>;
  close(): Promise<void>;
}

/** Port 80 is decided as plain HTTP (a rule without a port allows it); every other port as CONNECT. */
export const viaFor = (port: number) => (port === 80 ? ('http' as const) : ('connect' as const));

export async function startTransparent(
  pool: Pool,
  ports: readonly number[],
  proxy: Pick<ProxyServer, 'transparent'>,
  audit: Audit,
  report: Report,
): Promise<TransparentListeners> {
  const servers = new Map<number, net.Server[]>();

  const onConnection = (port: number) => (socket: net.Socket) => {
    socket.on('error', () => socket.destroy());
    const local = socket.localAddress ?? '';
    const name = pool.nameOf(local);
    if (name === undefined) {
      audit.write({
        event: 'connect',
        client: socket.remoteAddress ?? '',
        host: local,
        port,
        decision: 'deny',
        reason: 'not-allowlisted',
        detail: `pool address ${local} stands for no name (never given out, expired, or released by a reload)`,
        mode: 'transparent',
      });
      return void socket.destroy();
    }
    proxy.transparent(socket, name, port, viaFor(port));
  };

  const listen = (ip: string, port: number) =>
    new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, onConnection(port));
      s.once('error', reject);
      s.listen({ host: ip, port, backlog: 128 }, () => {
        s.removeListener('error', reject);
        s.on('error', (err) => report(`transparent ${ip}:${port}: ${err.message}`));
        resolve(s);
      });
    });
  const closeAll = (list: net.Server[]) => Promise.all(list.map((s) => new Promise<void>((r) => s.close(() => r()))));

  async function open(port: number): Promise<void> {
    const opened: net.Server[] = [];
    try {
      for (const ip of pool.addresses) opened.push(await listen(ip, port));
    } catch (err) {
      await closeAll(opened);
      throw new Error(`transparent mode: cannot listen on the pool on port ${port}: ${(err as Error).message}`);
    }
    servers.set(port, opened);
  }

  /** Close the ports no longer wanted, open the new ones; every port that can be opened is, then the first failure is thrown. */
  async function setPorts(next: readonly number[]): Promise<void> {
    const want = new Set(next);
    for (const [port, list] of servers) {
      if (want.has(port)) continue;
      servers.delete(port);
      await closeAll(list);
    }
    const failed: Error[] = [];
    for (const port of want) if (!servers.has(port)) await open(port).catch((err: Error) => failed.push(err));
    if (failed.length) throw failed[0];
  }

  try {
    await setPorts(ports);
  } catch (err) {
    await closeAll([...servers.values()].flat());
    throw err;
  }
  return {
    ports: () => [...servers.keys()].sort((a, b) => a - b),
    setPorts,
    close: async () => {
      const all = [...servers.values()].flat();
      servers.clear();
      await closeAll(all);
    },
  };
}
