// ATTACK17 (a re-attack of the ATTACK15 fix) inside a credential-injected tunnel (TLS, node:http's path):
// closing requests followed by more; F2 (an upgrade after a close node:http's parser missed) fixed.
import t from 'tap';
import { startInjected, type Injected } from './harness/injected.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seen: string[] = [];
let inj: Injected;
t.before(async () => {
  inj = await startInjected('sk-secret', (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => setTimeout(() => res.end(`answer ${req.url}\n`), req.url?.startsWith('/slow') ? 500 : 0));
  });
});
t.teardown(() => inj?.close());
const answers = (text: string) => [...text.matchAll(/answer (\S+)/g)].map((m) => m[1]);
const H = () => `Host: api.test:${inj.port}\r\n`;
const FIRSTS: Record<string, () => string> = {
  'HTTP/1.1 close': () => `GET /slow-one HTTP/1.1\r\n${H()}Connection: close\r\n\r\n`,
  'HTTP/1.0': () => `GET /slow-one HTTP/1.0\r\n${H()}\r\n`,
  'close<TAB>': () => `GET /slow-one HTTP/1.1\r\n${H()}Connection: close\t\r\n\r\n`,
  'trailer close': () => `POST /slow-one HTTP/1.1\r\n${H()}Transfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n`,
  'Proxy-Connection close': () => `GET /slow-one HTTP/1.1\r\n${H()}Proxy-Connection: close\r\n\r\n`,
  'Expect close': () => `POST /slow-one HTTP/1.1\r\n${H()}Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi`,
};
const SECONDS: Record<string, () => string> = {
  DELETE: () => `DELETE /evil HTTP/1.1\r\n${H()}\r\n`,
  upgrade: () =>
    `GET /evil HTTP/1.1\r\n${H()}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  CONNECT: () => `CONNECT api.test:${inj.port} HTTP/1.1\r\n${H()}\r\nGET /evil HTTP/1.1\r\n${H()}\r\n`,
};
t.test('injected tunnel: nothing after a closing request reaches the origin', async (t) => {
  for (const [fn, first] of Object.entries(FIRSTS))
    for (const [sn, second] of Object.entries(SECONDS))
      for (const split of [false, true]) {
        seen = [];
        const c = await inj.open();
        let got = '';
        c.on('data', (d: Buffer) => (got += d.toString('latin1')));
        const ended = new Promise<void>((r) => (c.once('end', () => r()), c.once('close', () => r())));
        if (split) {
          c.write(first());
          await sleep(200);
          c.write(second());
        } else c.write(first() + second());
        await Promise.race([ended, sleep(2000)]);
        const what = `${fn} + ${sn}${split ? ' (later)' : ''}`;
        t.same(answers(got), ['/slow-one'], `${what}: only its answer`);
        t.notOk(
          seen.some((x) => x.includes('/evil')),
          `${what}: not forwarded (${seen.join(',')})`,
        );
        c.destroy();
      }
  await sleep(200);
  t.same(inj.reports, []);
});
