// A client over its connection limit (--max-connections) is answered, not cut off: 429 with Retry-After
// and the deny header, one audit line, and nothing it sends on that connection is handled (no lookup, no
// dial), whichever request it is (CONNECT, plain HTTP, WebSocket). Through the real gateway in a namespace.
import t from 'tap';
import { startCore, nodeIn, type Core } from './harness/core.js';

let core: Core;
t.before(async () => {
  core = await startCore({ gatewayArgs: ['--max-connections', '2'] });
});
t.teardown(() => core?.close());

/** Hold `hold` idle connections, then send `request` on one more; print what comes back. */
const overLimit = (request: string, hold = 2) =>
  nodeIn<{ reply: string; afterRelease: string }>(
    core.ns,
    `import net from 'node:net';
     const held = [];
     for (let i = 0; i < ${hold}; i++) { const s = net.connect(3128, '127.0.0.1'); s.on('error', () => {}); held.push(s); }
     await new Promise((r) => setTimeout(r, 300));
     const ask = (req) => new Promise((resolve) => {
       const s = net.connect(3128, '127.0.0.1'); let got = '';
       s.on('data', (d) => (got += d)); s.on('error', () => {}); s.on('close', () => resolve(got));
       s.on('connect', () => s.write(req));
       setTimeout(() => { s.destroy(); resolve(got); }, 4000);
     });
     const reply = await ask(${JSON.stringify(request)});
     for (const s of held) s.destroy();
     await new Promise((r) => setTimeout(r, 300));
     // Under the limit again: the same request is handled (the count was not leaked).
     const afterRelease = (await ask('GET http://allowed.test/after HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n')).split('\\r\\n')[0];
     console.log(JSON.stringify({ reply, afterRelease }));
     process.exit(0);`,
  );

t.test('over the limit: 429, Retry-After, the deny header, an audit line; never dialled', async (t) => {
  const before = (await core.gateway.settledAudit()).length;
  const requests = [
    'CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n',
    'GET http://allowed.test/over HTTP/1.1\r\nHost: allowed.test\r\n\r\n',
    'GET http://allowed.test/ws HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  ];
  for (const req of requests) {
    const r = await overLimit(req);
    const what = req.split(' ').slice(0, 2).join(' ');
    t.match(r.reply, /^HTTP\/1\.1 429 Too Many Requests\r\n/, `${what}: 429`);
    t.match(r.reply, /\r\nx-codex-egress-deny: connection-limit\r\n/i, `${what}: the deny header`);
    t.match(r.reply, /\r\nretry-after: \d+\r\n/i, `${what}: Retry-After`);
    t.match(r.reply, /more than 2 open connections from this client/, `${what}: the body says why`);
    t.notMatch(r.reply, /200 Connection established|hello from/i, `${what}: nothing relayed`);
    t.equal(r.afterRelease, 'HTTP/1.1 200 OK', `${what}: under the limit again, served`);
  }
  await core.gateway.waitForAudit((e) => e.reason === 'connection-limit', 5000);
  const lines = (await core.gateway.settledAudit()).slice(before);
  const refusals = lines.filter((e) => e.reason === 'connection-limit');
  t.ok(refusals.length >= 1, 'the audit log says so');
  t.match(refusals[0], { event: 'connect', decision: 'deny', reason: 'connection-limit', status: 429, client: '127.0.0.1' });
  // The only requests handled are the three sent under the limit again (GET /after): none from a refused socket.
  t.notOk(
    lines.some((e) => e.event === 'connect' && e.decision === 'allow'),
    'the over-limit CONNECT was never admitted',
  );
  const served = lines.filter((e) => e.event === 'http' && e.decision === 'allow');
  t.equal(
    served.length,
    requests.length,
    'only the requests under the limit were admitted (not the over-limit plain-HTTP or WebSocket one)',
  );
});
