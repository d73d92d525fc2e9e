// Found by an attack review: plain HTTP to another virtual host through a tunnel, past the first-bytes check,
// against an origin that parses HTTP leniently and logs every request (test/fixtures/rawhttp.ts).
//
// 1. On a port rule, an SSH identification line may carry a comment, so `SSH-2.0-x /steal HTTP/1.1`
//    passes as SSH, and the tunnel becomes a plain pipe: an origin that accepts any method token (Go's
//    net/http does) reads it as a request with the Host header that follows.
// 2. On a /tcp rule ("TLS and HTTP are still held to the host"), HTTP is recognised only as a method of
//    at most 32 token bytes and one space at the very start: a leading empty line (which servers must
//    ignore), a longer method or a tab passes the request unchecked.
import t from 'tap';
import { join } from 'node:path';
import { startCore, nodeIn, RULES, WEB, type Core } from './harness/core.js';
import type { Proc } from './harness/netns.js';
import { ROOT } from './harness/world.js';

let core: Core;
let named: Proc;
let tcp: Proc;
t.before(async () => {
  core = await startCore({
    flagRules: [...RULES, 'allowed.test:8080', 'allowed.test:8090/tcp'],
    gatewayArgs: ['--hello-timeout', '2', '--headers-timeout', '2'],
  });
  named = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8080']);
  tcp = core.ns.spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'rawhttp.js'), WEB, '8090']);
  await named.waitFor(/rawhttp ready/);
  await tcp.waitFor(/rawhttp ready/);
});
t.teardown(async () => {
  await named?.stop();
  await tcp?.stop();
  await core?.close();
});

type Seen = { method: string; path: string; host?: string };
const seen = (p: Proc, from = 0): Seen[] =>
  p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Seen)
    .slice(from);
const settle = () => new Promise((r) => setTimeout(r, 300));

/** Open a CONNECT tunnel, then send `inner` once it is established; returns what came back. */
function tunnel(authority: string, inner: string, waitMs = 2500) {
  return nodeIn<{ reply: string }>(
    core.ns,
    `import net from 'node:net';
     const s = net.connect({ port: 3128, host: '127.0.0.1' });
     let reply = ''; let sent = false;
     s.on('data', (d) => { reply += d.toString('latin1'); if (!sent && reply.includes('\\r\\n\\r\\n')) { sent = true; s.write(Buffer.from(${JSON.stringify(inner)}, 'latin1')); } });
     s.on('close', done);
     s.on('error', () => undefined);
     s.write('CONNECT ${authority} HTTP/1.1\\r\\nHost: ${authority}\\r\\n\\r\\n');
     const timer = setTimeout(done, ${waitMs});
     function done() { clearTimeout(timer); console.log(JSON.stringify({ reply })); process.exit(0); }`,
  );
}

const evil = (what: string) => `${what}\r\nHost: evil.test\r\n\r\n`;

t.test('an SSH identification line that is also an HTTP request line does not pass on a port rule', async (t) => {
  for (const line of ['SSH-2.0-x /steal HTTP/1.1', 'SSH-2.0-OpenSSH_9.6 /steal http/1.1', 'SSH-1.99-x * HTTP/1.0']) {
    const m = seen(named).length;
    await tunnel('allowed.test:8080', evil(line));
    await settle();
    t.notOk(
      seen(named, m).some((r) => r.host === 'evil.test'),
      `${JSON.stringify(line)}: the origin never parsed a request for evil.test`,
    );
  }
});

t.test('on a /tcp rule, HTTP in any spelling a server accepts is still held to the host', async (t) => {
  const cases: Array<[string, string]> = [
    ['a leading empty line', evil('\r\nGET /steal HTTP/1.1')],
    ['two leading empty lines, bare LF', evil('\n\r\nGET /steal HTTP/1.1')],
    ['a method longer than 32 bytes', evil(`${'A'.repeat(40)} /steal HTTP/1.1`)],
    ['a tab after the method', evil('GET\t/steal HTTP/1.1')],
    ['an SSH line that is a request line', evil('SSH-2.0-x /steal HTTP/1.1')],
  ];
  for (const [what, inner] of cases) {
    const m = seen(tcp).length;
    await tunnel('allowed.test:8090', inner);
    await settle();
    t.notOk(
      seen(tcp, m).some((r) => r.host === 'evil.test'),
      `${what}: the origin never parsed a request for evil.test (${JSON.stringify(seen(tcp, m))})`,
    );
  }
  // Still usable: HTTP naming the tunnel's host (after an empty line too) goes through.
  const ok = await tunnel('allowed.test:8090', '\r\nGET /fine HTTP/1.1\r\nHost: allowed.test:8090\r\n\r\n');
  t.match(ok.reply, /origin saw GET \/fine host=allowed.test:8090/, "HTTP for the tunnel's own host passes (a leading empty line is fine)");
});
