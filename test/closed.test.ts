// A closed socket lets go of its connection's state (proxy/http/closed.ts): its listeners are dropped
// once every 'close' listener has run, so the socket object, which V8's young-generation GC can keep
// after close, no longer holds the closures, the other socket and the buffers of its connection. Unit
// test on a socket pair, then through the real in-process proxy: a relayed tunnel's client and upstream
// sockets, captured as the proxy makes them, hold no listeners after the tunnel closed.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { dropListenersOnClose } from '../proxy/http/closed.js';
import { readToEnd, startInproc } from './harness/inproc.js';

const tick = () => new Promise((r) => setImmediate(r));
const held = (s: net.Socket) => ['data', 'end', 'close', 'timeout', 'drain', 'finish'].map((e) => s.listenerCount(e));

t.test('dropListenersOnClose: after close only a no-op error listener is left', async (t) => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  const s = await accepted;
  dropListenersOnClose(s);
  s.on('data', () => undefined);
  s.on('end', () => undefined);
  let closeListenersRan = 0;
  s.on('close', () => closeListenersRan++);
  s.on('close', () => closeListenersRan++);
  const closed = new Promise((r) => s.once('close', r));
  client.destroy();
  await closed;
  await tick();
  t.equal(closeListenersRan, 2, 'every close listener ran before the listeners went');
  t.same(held(s), [0, 0, 0, 0, 0, 0]);
  t.equal(s.listenerCount('error'), 1);
  t.doesNotThrow(() => s.emit('error', new Error('late')), 'a late error is no exception');
});

t.test('a relayed tunnel: its client socket and upstream socket hold no listeners once closed', async (t) => {
  const g = await startInproc({ zone: { 'allowed.test': { a: ['127.0.0.1'] } }, rules: (p) => [`allowed.test:${p}/tcp`] });
  t.teardown(() => g.close());
  // The proxy's sockets, captured as they are made: accepted on its port, and dialled to the origin.
  const accepted: Array<{ s: net.Socket; localPort: number | undefined }> = [];
  const dialled: Array<{ s: net.Socket; port: unknown }> = [];
  const connect = net.connect;
  const emit = net.Server.prototype.emit;
  net.connect = ((...a: Parameters<typeof net.connect>) => {
    const s = connect(...a);
    dialled.push({ s, port: (a[0] as { port?: unknown }).port });
    return s;
  }) as typeof net.connect;
  net.Server.prototype.emit = function (this: net.Server, event: string | symbol, ...a: unknown[]) {
    if (event === 'connection') accepted.push({ s: a[0] as net.Socket, localPort: (a[0] as net.Socket).localPort });
    return (emit as (this: net.Server, event: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...a);
  } as typeof emit;
  t.teardown(() => {
    net.connect = connect;
    net.Server.prototype.emit = emit;
  });

  const port = g.origin.port;
  const c = connect(g.proxy.address.port, '127.0.0.1');
  c.write(`CONNECT allowed.test:${port} HTTP/1.1\r\nHost: allowed.test:${port}\r\n\r\n`);
  const established = await new Promise<string>((r) => c.once('data', (b: Buffer) => r(b.toString('latin1'))));
  t.match(established, /^HTTP\/1\.1 200 /);
  // Not TLS, HTTP or SSH: a /tcp rule relays it; the origin (an HTTP server) answers 400 and closes.
  c.write(Buffer.from([0x00, 0x01, 0x02, 0x0d, 0x0a, 0x0d, 0x0a]));
  t.match((await readToEnd(c)).toString('latin1'), /^HTTP\/1\.1 400 /);
  c.destroy();
  await g.audit.waitFor((e) => e.event === 'tunnel_close');
  await tick();
  await tick();

  const client = accepted.find((x) => x.localPort === g.proxy.address.port)?.s;
  const upstream = dialled.find((x) => x.port === port)?.s;
  t.ok(client, 'the proxy side of the client connection was seen');
  t.ok(upstream, 'the upstream connection was seen');
  for (const [name, s] of [
    ['client', client],
    ['upstream', upstream],
  ] as const) {
    t.ok(s!.destroyed, `${name} closed`);
    t.same(held(s!), [0, 0, 0, 0, 0, 0], `${name}: no listeners left`);
  }
});
