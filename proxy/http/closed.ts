// A closed socket lets go of its connection's state.
//
// V8's young-generation GC keeps a socket's object alive after the socket has closed, until the next
// mark-compact (it is still reachable from the old generation then). Through its listeners, the
// object holds everything of its connection: the closures, the other socket of the tunnel or request,
// their buffers. Measured under load (bench/results/perf7-rounds.md, bench/gc-nvp.ts): nearly every
// tunnel opened since the last scavenge was kept, copied and then promoted by each scavenge (5–7 MB,
// pauses of 8–11 ms three times a second), where a proxy whose closed sockets hold nothing keeps ~70 KB.
//
// The deeper causes were found later (bench/results/perf8-nepotism.md): the registry's Set, V8's
// pretenuring and Maglev, now avoided by proxy/live-list.ts and the gateway's Node flags
// (proxy/runtime.ts). With those flags this makes no measurable difference (connect c=32: ~80 KB kept
// per scavenge with or without it); it stays for a gateway run without them.
import type net from 'node:net';

const ignore = (): void => undefined;

/** Once `socket` has closed (and every 'close' listener has run), its listeners are dropped. */
export function dropListenersOnClose(socket: net.Socket): void {
  socket.once('close', () =>
    process.nextTick(() => {
      socket.removeAllListeners();
      // Nothing is emitted after 'close'; if anything were, an 'error' must not become an exception.
      socket.on('error', ignore);
    }),
  );
}
