// The gateway's last resort against an exception nothing else caught. No request should ever get here
// (every handler is guarded and every stream error handled); if one does:
// - inside one connection's scope (its handler, and the promises and timers it started), that
//   connection is closed and the gateway keeps serving the others: only that connection's state is
//   suspect;
// - anywhere else (the DNS server, the firewall, a reload, a library callback outside any connection)
//   the process state is unknown: it is logged and the gateway exits non-zero (EXIT_INTERNAL). The
//   kernel firewall's rules stay in place, so the sandbox is cut off until the gateway is restarted.
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';

export const EXIT_INTERNAL = 70;

export interface ConnectionScope {
  close(): void;
}

export const connectionScope = new AsyncLocalStorage<ConnectionScope>();

/** The last resort's handling of an exception in a connection's scope, while one is installed. */
let inConnection: ((err: unknown) => void) | undefined;

/**
 * Run `fn` (the start of a connection's handling) in that connection's scope, and make every event the
 * socket emits later run in it too: what its listeners throw, and the promises and timers they start,
 * are then known to belong to this connection. A synchronous throw (from `fn` or from a listener) is
 * handled here, in the scope: by the time it would reach `uncaughtException` the scope is gone. Except
 * from a 'close' listener: the connection is closed already and the cleanup after it would not run.
 */
export function withConnectionScope<T>(
  socket: { emit: (event: string | symbol, ...a: unknown[]) => boolean; destroy(): void },
  fn: () => T,
): T | undefined {
  return connectionScope.run({ close: () => socket.destroy() }, () => {
    // One resource per connection, made in its scope; every event runs in it. (AsyncResource.bind would
    // do the same but costs a deprecation wrapper per call: measurable at thousands of connections/s.)
    const resource = new AsyncResource('codex-egress:connection');
    const emit = socket.emit;
    const contained = (event: string | symbol, ...a: unknown[]): boolean => {
      try {
        return emit.call(socket, event, ...a);
      } catch (err) {
        // A throw in a 'close' listener skips the cleanup of the listeners after it, and the socket is
        // already closed: nothing to close here, so it goes on to the last resort, outside the scope (exit).
        if (!inConnection || event === 'close') throw err;
        inConnection(err);
        return true;
      }
    };
    socket.emit = (event: string | symbol, ...a: unknown[]): boolean => resource.runInAsyncScope(contained, socket, event, ...a);
    try {
      return fn();
    } catch (err) {
      if (!inConnection) throw err;
      inConnection(err);
      return undefined;
    }
  });
}

export interface LastResortOptions {
  log(line: string): void;
  exit(code: number): void;
}

/** Install the handlers (once per process); returns a function that removes them. */
export function installLastResort(opts: LastResortOptions): () => void {
  const handle = (kind: string) => (err: unknown) => {
    const text = (err as Error)?.stack ?? String(err);
    const scope = connectionScope.getStore();
    if (scope) {
      opts.log(`codex-egress: internal error (${kind}) in one connection; it was closed, the gateway keeps serving: ${text}`);
      try {
        scope.close();
      } catch {
        /* closing is best effort */
      }
      return;
    }
    opts.log(
      `codex-egress: internal error (${kind}) outside any connection; exiting with status ${EXIT_INTERNAL} (the firewall stays closed): ${text}`,
    );
    opts.exit(EXIT_INTERNAL);
  };
  const onException = handle('uncaught exception');
  const onRejection = handle('unhandled rejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  inConnection = onException;
  return () => {
    if (inConnection === onException) inConnection = undefined;
    process.removeListener('uncaughtException', onException);
    process.removeListener('unhandledRejection', onRejection);
  };
}
