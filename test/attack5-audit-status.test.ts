// ATTACK5 finding 4 (low, audit accuracy): a forwarded plain-HTTP request whose origin never answered was
// audited with `status: 200` (Node's default statusCode of a response never written) when the client gave
// up: the log said the origin answered 200 to a request it never answered. Now the line has no status and
// says the client closed before the answer. Red before the fix: 2. In process.
import t from 'tap';
import net, { type AddressInfo } from 'node:net';
import { startInproc, type Inproc } from './harness/inproc.js';

let g: Inproc;
let silent: net.Server;
const held = new Set<net.Socket>();
t.before(async () => {
  // An origin that reads the request and never answers.
  silent = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as AddressInfo).port;
  g = await startInproc({ zone: { 'silent.test': { a: ['127.0.0.1'] } }, rules: [`silent.test:${port}`] });
});
t.teardown(async () => {
  for (const s of held) s.destroy();
  silent?.close();
  await g?.close();
});

t.test('a request the origin never answered is not audited as answered 200', async (t) => {
  const port = (silent.address() as AddressInfo).port;
  const c = net.connect(g.proxy.address.port, '127.0.0.1');
  c.on('error', () => undefined);
  c.write(`GET http://silent.test:${port}/x HTTP/1.1\r\nHost: silent.test:${port}\r\n\r\n`);
  await new Promise((r) => setTimeout(r, 400));
  c.destroy();
  const e = await g.audit.waitFor((x) => x.event === 'http' && x.host === 'silent.test');
  t.equal((e as { status?: number }).status, undefined, 'no status: nothing was answered');
  t.match(e, { decision: 'allow', detail: /closed before/ });
});
