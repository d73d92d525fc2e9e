// The pool's addresses made the gateway's own: one local route (`ip route replace local CIDR dev lo`),
// so the kernel answers ARP for them on the sandbox-facing link and the listeners can bind them. The
// only side effect of transparent mode outside its sockets. A pool inside 127.0.0.0/8 is local already.
import { execa } from 'execa';

export class PoolRouteError extends Error {
  override readonly name = 'PoolRouteError';
  readonly code = 'ERR_TRANSPARENT_POOL';
}

const isLoopback = (cidr: string) => cidr.startsWith('127.');

async function ip(args: string[]): Promise<void> {
  await execa('ip', args, { timeout: 15_000 });
}

/** Make every address of the pool local; returns the function that removes the route again. */
export async function installPoolRoute(cidr: string): Promise<() => Promise<void>> {
  if (isLoopback(cidr)) return async () => undefined;
  try {
    await ip(['route', 'replace', 'local', cidr, 'dev', 'lo', 'table', 'local']);
  } catch (err) {
    throw new PoolRouteError(
      `transparent pool ${cidr}: could not make its addresses the gateway's (ip route: ${(err as Error).message.split('\n')[0]}); the gateway needs NET_ADMIN, or use --no-transparent`,
    );
  }
  return async () => {
    await ip(['route', 'del', 'local', cidr, 'dev', 'lo', 'table', 'local']).catch(() => undefined);
  };
}
