// Found by an attack review: a client that never reads makes the gateway buffer an origin's whole answer.
// When an origin refuses a WebSocket upgrade and answers with a body (any URL on an allowed host
// serving a large file, asked with `Upgrade: websocket`), forward.ts copies the body to the client
// with socket.write on every chunk and never waits for the client: a sandbox that never reads makes
// the gateway hold the whole download in memory, and enough of them take the gateway down (OOM)
// for every connection. The same while a tunnel's first bytes are checked (the origin's bytes are
// passed on as they come, whether or not the client reads). The plain request path (pipe) is the control: it holds. (Each case is
// measured from the memory the previous one left, so the ones expected to hold come first.)
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCore, nodeIn, RULES, WEB, type Core } from './harness/core.js';
import type { Proc } from './harness/netns.js';
import { ROOT } from './harness/world.js';

let core: Core;
let origin: Proc;
t.before(async () => {
  core = await startCore({ flagRules: [...RULES, 'allowed.test:8081', 'allowed.test:8092/tcp'] });
  origin = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8081', '0', '8092']);
  await origin.waitFor(/rawhttp ready/);
});
t.teardown(async () => {
  await origin?.stop();
  await core?.close();
});

const rssMb = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${core.gateway.proc.child.pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
};

/** Send `request`, never read the answer for `holdMs`, and report the gateway's peak memory meanwhile. */
async function neverRead(request: string, holdMs = 5000): Promise<number> {
  const before = rssMb();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssMb())), 100);
  await nodeIn<{ ok: boolean }>(
    core.ns,
    `import net from 'node:net';
     const s = net.connect({ port: 3128, host: '127.0.0.1' });
     s.on('error', () => undefined);
     s.pause();
     s.write(${JSON.stringify(request)});
     setTimeout(() => { console.log(JSON.stringify({ ok: true })); process.exit(0); }, ${holdMs});`,
  );
  clearInterval(timer);
  return peak - before;
}

const H = 'allowed.test:8081';

t.test('a client that never reads does not make the gateway buffer a download', async (t) => {
  const plain = await neverRead(`GET http://${H}/big HTTP/1.1\r\nHost: ${H}\r\n\r\n`);
  t.ok(plain < 100, `plain request: the gateway grew by ${plain.toFixed(0)} MB (< 100 MB)`);
  // A server that speaks first, on a /tcp rule: the first-bytes check waits for the client (up to the
  // hello timeout, 10 s) while passing the server's bytes on.
  const first = await neverRead(`CONNECT allowed.test:8092 HTTP/1.1\r\nHost: allowed.test:8092\r\n\r\n`);
  t.ok(first < 100, `a server that speaks first, while the first bytes are checked: the gateway grew by ${first.toFixed(0)} MB (< 100 MB)`);
  const tunnelled = await neverRead(
    `CONNECT ${H} HTTP/1.1\r\nHost: ${H}\r\n\r\nGET /big HTTP/1.1\r\nHost: ${H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  t.ok(tunnelled < 100, `the same inside a CONNECT tunnel: the gateway grew by ${tunnelled.toFixed(0)} MB (< 100 MB)`);
  const upgrade = await neverRead(
    `GET http://${H}/big HTTP/1.1\r\nHost: ${H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  t.ok(upgrade < 100, `refused upgrade answered with a body: the gateway grew by ${upgrade.toFixed(0)} MB (< 100 MB)`);
  const r = await nodeIn<{ reply: string }>(
    core.ns,
    `import net from 'node:net';
     const s = net.connect({ port: 3128, host: '127.0.0.1' }); let reply = '';
     s.on('data', (d) => { reply += d; }); s.on('error', () => undefined);
     s.write('GET http://${H}/alive HTTP/1.1\\r\\nHost: ${H}\\r\\n\\r\\n');
     setTimeout(() => { console.log(JSON.stringify({ reply })); process.exit(0); }, 1500);`,
  );
  t.match(r.reply, /origin saw GET \/alive/, 'and the gateway still serves');
});
