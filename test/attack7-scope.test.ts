// ATTACK7: a synchronous exception in a connection's socket listeners (here: while http.Server parses the
// first bytes the front door handed over, or the bytes read at the client's FIN). Finding (low, defence
// in depth): it unwound the connection's scope before reaching `uncaughtException`, so the last resort saw
// it "outside any connection" and the gateway exited 70. Now lastresort.ts's scope handles a synchronous
// throw itself, in the scope: that connection is closed and the gateway keeps serving.
// The throw is simulated by an audit sink that throws on one line (the clientError handler writes one).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const script = (status: number, bytes: string, end: boolean) => `
  import net from 'node:net';
  const root = ${JSON.stringify(ROOT)};
  const { installLastResort } = await import(root + '/dist/proxy/lastresort.js');
  const { startProxy } = await import(root + '/dist/proxy/http/proxy.js');
  const { DEFAULT_LIMITS } = await import(root + '/dist/proxy/config.js');
  const { mergeSources } = await import(root + '/dist/proxy/policy/allowlist.js');
  installLastResort({ log: (l) => console.error(l.split('\\n')[0]), exit: (c) => process.exit(c) });
  const allow = mergeSources({ defaults: false, flags: ['allowed.test'] }).allowlist;
  const proxy = await startProxy('127.0.0.1', 0, {
    allowlist: () => allow,
    resolver: { resolve: async () => ({ ok: false }) },
    audit: { write: (e) => { if (e.status === ${status}) throw new Error('audit sink failed'); }, close: async () => {} },
    limits: { ...DEFAULT_LIMITS, headersTimeoutMs: 500 },
    health: () => ({ healthy: true }),
    report: () => undefined,
  });
  await new Promise((r) => {
    const c = net.connect({ port: proxy.address.port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      c.write(Buffer.from(${JSON.stringify(bytes)}, 'latin1'));
      if (${end}) c.end();
    });
    c.on('error', () => undefined);
    c.on('close', r);
    setTimeout(() => (c.destroy(), r()), 1500);
  });
  console.log('still serving');
  process.exit(0);`;

const run = (status: number, bytes: string, end = false) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', script(status, bytes, end)], { encoding: 'utf8', timeout: 20_000 });

t.test('a throw while http.Server parses the first bytes (hand-over) closes that connection only', async (t) => {
  for (const [what, bytes] of [
    ['lowercase connect (parse error, 400)', 'connect allowed.test:443 HTTP/1.1\r\n\r\n'],
    ['bare LF (parse error, 400)', 'GET http://allowed.test/ HTTP/1.1\n\n'],
  ] as const) {
    const r = run(400, bytes);
    t.equal(r.status, 0, `${what}: the gateway keeps serving (${r.stderr.trim()})`);
    t.match(r.stderr, /in one connection/, `${what}: contained`);
  }
});

t.test('held: the front deadline (408) and a bad fast-path target stay contained', async (t) => {
  const r = run(408, 'CONNECT allowed.test:443 HTTP/1.1\r\n');
  t.equal(r.status, 0, r.stderr);
  const b = run(400, 'CONNECT allowed.test HTTP/1.1\r\n\r\n');
  t.equal(b.status, 0, b.stderr);
});

t.test('a throw from the parse at the client FIN closes that connection only', async (t) => {
  const r = run(400, 'CONNECT allowed.test:443 HTTP/1.1\r\nX:', true);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /in one connection/, 'contained');
});
