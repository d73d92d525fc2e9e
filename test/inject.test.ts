// Credential injection through the real gateway (a child process in a namespace, fake internet on
// documentation addresses): TLS to an injected host is terminated with the per-project CA, the sentinel
// in the credential's header becomes the real value, and every way around that is refused or carries
// nothing: another key, a duplicate header, a second request on the same connection, another Host or
// SNI, another port, HTTP/2, a WebSocket upgrade, an upstream whose certificate does not verify. The
// fake servers report what they received as sha256 hashes (/echo-auth), so the test can tell the real
// value arrived without any client ever seeing it.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCore, curl, nodeIn, type Core } from './harness/core.js';
import type { RunningGateway } from './harness/world.js';
import { ensureCa } from '../proxy/inject/ca.js';
import { SENTINEL } from '../proxy/inject/credentials.js';

const REAL = 'sk-real-openai-key-0123456789abcdef';
const GH_REAL = 'ghp_realGitHubToken0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const PORT = 3129;
const P = `http://127.0.0.1:${PORT}`;

let core: Core;
let gw: RunningGateway;
let ca = '';
t.before(async () => {
  core = await startCore({ flagRules: ['allowed.test', 'allowed.test:8443', 'second.test', 'cache.test'] });
  const dir = join(core.dir, 'inject');
  ca = ensureCa(join(dir, 'ca'), 'inject-test').cert;
  const creds = join(dir, 'credentials.json');
  writeFileSync(
    creds,
    JSON.stringify({
      v: 1,
      credentials: [
        { name: 'openai', host: 'ALLOWED.test', value: REAL },
        { name: 'github', host: 'second.test', format: 'token {value}', value: GH_REAL, foreign: 'refuse' },
        // cache.test resolves to the same server, whose certificate does not name it
        { name: 'unverified', host: 'cache.test', value: REAL },
      ],
    }),
  );
  gw = await core.extraGateway([
    '--proxy-port',
    String(PORT),
    '--dns-port',
    '5399',
    '--upstream',
    '198.51.100.53',
    '--credentials',
    creds,
    '--ca-dir',
    join(dir, 'ca'),
    '--upstream-ca',
    core.cert,
  ]);
});
t.teardown(() => core?.close());

/** curl through the injecting gateway, trusting only the project CA. */
const via = (args: string[]) => curl(core.ns, ['--proxy', P, '--cacert', ca, ...args]);
const bearer = (v: string) => `Authorization: Bearer ${v}`;
const auths = (body: string) => [...body.matchAll(/\{"who":[^\n]*?\]\}/g)].map((m) => (JSON.parse(m[0]) as { auth: string[] }).auth);

t.test('the sentinel becomes the real key; the audit line says injected, with the name only', async (t) => {
  const r = await via(['-H', bearer(SENTINEL), 'https://allowed.test/echo-auth']);
  t.equal(r.code, 200, r.stderr);
  t.same(auths(r.body), [[sha(`Bearer ${REAL}`)]], 'the origin received the real key');
  t.notMatch(r.body, REAL, 'the client never sees it');
  const line = await gw.waitForAudit((e) => e.event === 'http' && e.host === 'allowed.test' && e.credential === 'injected');
  t.match(line, { decision: 'allow', credential_name: 'openai', port: 443 });
  t.ok(await gw.waitForAudit((e) => e.event === 'connect' && e.host === 'allowed.test' && e.intercepted === true));
});

t.test('keep-alive: every request on the same TLS connection is rewritten', async (t) => {
  // curl reuses one connection for URLs of the same origin
  const r = await via([
    '-H',
    bearer(SENTINEL),
    'https://allowed.test/echo-auth?1',
    'https://allowed.test/echo-auth?2',
    'https://allowed.test/echo-auth?3',
  ]);
  t.same(auths(r.body), [[sha(`Bearer ${REAL}`)], [sha(`Bearer ${REAL}`)], [sha(`Bearer ${REAL}`)]]);
  // and a raw second request on one socket after the first, with another spelling of the header name
  const out = await rawTls('allowed.test', 'allowed.test', [
    `GET /echo-auth HTTP/1.1\r\nHost: allowed.test\r\nAUTHORIZATION: bearer ${SENTINEL}\r\n\r\n`,
    `GET /echo-auth HTTP/1.1\r\nHost: allowed.test\r\nauthorization: Bearer ${SENTINEL}\r\n\r\n`,
  ]);
  t.equal((out.match(/HTTP\/1\.1 200/g) ?? []).length, 2, 'two answers on one connection');
  t.equal(out.split(sha(`Bearer ${REAL}`)).length - 1, 2, 'both rewritten (the scheme matched in any case, the value exactly)');
});

t.test('a duplicate auth header (any spelling) is refused, never forwarded', async (t) => {
  const out = await rawTls('allowed.test', 'allowed.test', [
    `GET /echo-auth HTTP/1.1\r\nHost: allowed.test\r\nAuthorization: Bearer ${SENTINEL}\r\nauthorization: Bearer sk-attacker\r\n\r\n`,
  ]);
  t.match(out, /^HTTP\/1\.1 400/);
  t.notMatch(out, /"auth"/, 'nothing reached the origin');
  const line = await gw.waitForAudit((e) => e.event === 'http' && e.credential === 'duplicate');
  t.match(line, { decision: 'deny', reason: 'bad-request', credential_name: 'openai' });
});

t.test('another key: forwarded unchanged and audited (forward), or refused (refuse)', async (t) => {
  const r = await via(['-H', bearer('sk-stolen-elsewhere'), 'https://allowed.test/echo-auth']);
  t.same(auths(r.body), [[sha('Bearer sk-stolen-elsewhere')]], 'unchanged');
  t.match(await gw.waitForAudit((e) => e.event === 'http' && e.credential === 'foreign'), { credential_name: 'openai', decision: 'allow' });
  const none = await via(['https://allowed.test/echo-auth?none']);
  t.same(auths(none.body), [['-']], 'no header: none is added');
  t.ok(await gw.waitForAudit((e) => e.event === 'http' && e.credential === 'absent'));

  const g = await via(['-H', 'Authorization: token ghp_other', 'https://second.test/echo-auth']);
  t.equal(g.code, 403, 'github: foreign refused');
  t.match(g.body, /foreign-credential|not the sentinel/);
  t.match(await gw.waitForAudit((e) => e.event === 'http' && e.reason === 'foreign-credential'), {
    decision: 'deny',
    credential_name: 'github',
    status: 403,
  });
  const ok = await via(['-H', `Authorization: token ${SENTINEL}`, 'https://second.test/echo-auth']);
  t.same(auths(ok.body), [[sha(`token ${GH_REAL}`)]], 'github: its own format');
});

t.test('the stolen sentinel elsewhere carries nothing: another port, plain HTTP, a non-injected host', async (t) => {
  const other = await curl(core.ns, ['--proxy', P, '-k', '-H', bearer(SENTINEL), 'https://allowed.test:8443/echo-auth']);
  t.same(auths(other.body), [[sha(`Bearer ${SENTINEL}`)]], 'port 8443 is an ordinary tunnel: the sentinel arrives as is');
  const plain = await curl(core.ns, ['--proxy', P, '-H', bearer(SENTINEL), 'http://allowed.test/echo-auth']);
  t.same(auths(plain.body), [[sha(`Bearer ${SENTINEL}`)]], 'plain HTTP to the same host: not injected');
});

t.test('inside the intercepted tunnel: Host and SNI must name the tunnel host', async (t) => {
  const host = await rawTls('allowed.test', 'allowed.test', [
    `GET /echo-auth HTTP/1.1\r\nHost: second.test\r\nAuthorization: token ${SENTINEL}\r\n\r\n`,
  ]);
  t.match(host, /^HTTP\/1\.1 403/, 'Host of another injected host');
  t.notMatch(host, /"auth"/);
  // a client that accepts the certificate whatever its name: the gateway's own SNI check decides
  const sni = await rawTls(
    'allowed.test',
    'second.test',
    [`GET /echo-auth HTTP/1.1\r\nHost: allowed.test\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`],
    { anyName: true },
  );
  t.notMatch(sni, /"auth"/, 'SNI of another host: nothing forwarded');
  t.ok(await gw.waitForAudit((e) => e.event === 'connect' && e.reason === 'sni-mismatch'));
  // an ordinary client refuses the leaf for another name itself; the gateway closes and says why
  const strict = await rawTls('allowed.test', 'second.test', ['GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n']);
  t.match(strict, /ERROR ERR_TLS_CERT_ALTNAME_INVALID/);
  t.ok(await gw.waitForAudit((e) => e.event === 'connect' && e.reason === 'tls-required' && String(e.detail).includes('handshake')));
});

t.test('HTTP/2: ALPN gives HTTP/1.1 and the request is still rewritten; h2 only is refused', async (t) => {
  const r = await via(['--http2', '-v', '-H', bearer(SENTINEL), 'https://allowed.test/echo-auth']);
  t.same(auths(r.body), [[sha(`Bearer ${REAL}`)]]);
  t.match(r.stderr, /ALPN: server accepted http\/1\.1/i, 'curl offered h2 and got HTTP/1.1');
  const h2 = await nodeIn<{ ok: boolean; detail: string }>(
    core.ns,
    `${connectScript}
     const s = await tunnel('allowed.test');
     const c = tls.connect({ socket: s, servername: 'allowed.test', ca: ${JSON.stringify(readFileSync(ca, 'utf8'))}, ALPNProtocols: ['h2'] });
     c.on('secureConnect', () => { console.log(JSON.stringify({ ok: c.alpnProtocol === 'h2', detail: String(c.alpnProtocol) })); process.exit(0); });
     c.on('error', (e) => { console.log(JSON.stringify({ ok: false, detail: e.code || e.message })); process.exit(0); });`,
  );
  t.notOk(h2.ok, `an h2-only client gets no HTTP/2 (${h2.detail})`);
});

t.test('WebSocket upgrade through the interception gets the real key', async (t) => {
  const out = await rawTls('allowed.test', 'allowed.test', [
    `GET /echo-auth HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${SENTINEL}\r\n\r\n`,
  ]);
  t.match(out, /^HTTP\/1\.1 101/);
  t.match(out, new RegExp(`x-seen-authorization: ${sha(`Bearer ${REAL}`)}`, 'i'));
});

t.test('the upstream certificate must verify for the name: no key goes to an unverified host', async (t) => {
  const r = await via(['-H', bearer(SENTINEL), 'https://cache.test/echo-auth']);
  t.equal(r.code, 502, 'refused');
  t.notMatch(r.body, /"auth"/);
  t.ok(await gw.waitForAudit((e) => e.event === 'http' && e.host === 'cache.test' && e.decision === 'error'));
});

t.test('the real values appear in no audit line and no gateway output', async (t) => {
  const lines = await gw.settledAudit();
  const all = readFileSync(gw.auditPath, 'utf8') + gw.proc.output();
  t.notOk(all.includes(REAL), 'OpenAI key');
  t.notOk(all.includes(GH_REAL), 'GitHub token');
  t.ok(
    lines.some((e) => e.credential === 'injected'),
    'while injections happened',
  );
});

const connectScript = `
  import net from 'node:net';
  import tls from 'node:tls';
  const tunnel = (host) => new Promise((resolve, reject) => {
    const s = net.connect(${PORT}, '127.0.0.1');
    s.once('error', reject);
    s.write('CONNECT ' + host + ':443 HTTP/1.1\\r\\nHost: ' + host + ':443\\r\\n\\r\\n');
    s.once('data', (d) => (String(d).startsWith('HTTP/1.1 200') ? resolve(s) : reject(new Error(String(d)))));
  });`;

/** CONNECT host:443, TLS with `sni` (trusting the project CA), write each request after the previous answer. */
async function rawTls(host: string, sni: string, requests: string[], o: { anyName?: boolean } = {}): Promise<string> {
  const r = await nodeIn<{ out: string }>(
    core.ns,
    `${connectScript}
     const s = await tunnel(${JSON.stringify(host)});
     const c = tls.connect({ socket: s, servername: ${JSON.stringify(sni)}, ca: ${JSON.stringify(readFileSync(ca, 'utf8'))}${o.anyName ? ', checkServerIdentity: () => undefined' : ''} });
     let out = '';
     const reqs = ${JSON.stringify(requests)};
     const finish = () => { console.log(JSON.stringify({ out })); process.exit(0); };
     c.on('error', (e) => { out += 'ERROR ' + (e.code || e.message); finish(); });
     c.on('close', finish);
     c.once('secureConnect', () => c.write(reqs.shift()));
     let timer;
     c.on('data', (d) => {
       out += d;
       clearTimeout(timer);
       timer = setTimeout(() => (reqs.length ? c.write(reqs.shift()) : finish()), 300);
     });
     setTimeout(finish, 8000);`,
  );
  return r.out;
}
