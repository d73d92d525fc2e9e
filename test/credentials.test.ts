// In-process tests of credential injection's pure parts: the CA and leaf certificates (verified by
// node's TLS and X509Certificate), the header rewrite, the credentials file, the model `up` chooses, and
// `codex-egress secret` (stored outside the workdir, never printed).
import t from 'tap';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureCa, LeafIssuer, CaError } from '../proxy/inject/ca.js';
import { parseCredentials, headerValue, SENTINEL, CredentialsError, credentialSchema } from '../proxy/inject/credentials.js';
import { rewriteCredential } from '../proxy/inject/rewrite.js';
import { authKind, planCredentials, credentialPaths, writeInjection } from '../image/credentials.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';
import { tempDir } from './harness/world.js';
import { cliInProcess } from './harness/cli.js';

const tmp = tempDir('codex-egress-creds-');
t.teardown(() => tmp.remove());

t.test('the CA and a leaf: a CA with its key; the leaf verifies for its name only, through TLS', async (t) => {
  const dir = join(tmp.path, 'ca1');
  const ca = ensureCa(dir, 'p');
  t.ok(ca.created);
  const x = new X509Certificate(readFileSync(ca.cert));
  t.ok(x.ca, 'basicConstraints CA');
  t.equal(statSync(ca.key).mode & 0o777, 0o640, 'key 0640');
  t.notOk(ensureCa(dir, 'p').created, 'kept while valid');
  const issuer = new LeafIssuer(readFileSync(ca.cert, 'utf8'), readFileSync(ca.key, 'utf8'));
  const server = tls.createServer({ SNICallback: (name, cb) => cb(null, issuer.contextFor('api.example.test')) }, (s) => s.end('hello'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const connect = (servername: string) =>
    new Promise<string>((resolve) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername, ca: readFileSync(ca.cert) }, () =>
        c.once('data', (d) => resolve(String(d))),
      );
      c.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
    });
  t.equal(await connect('api.example.test'), 'hello', 'trusted for its name');
  t.match(await connect('other.example.test'), /ERR_TLS_CERT_ALTNAME_INVALID/, 'not for another');
  server.close();
  const other = ensureCa(join(tmp.path, 'ca2'), 'q');
  t.throws(() => new LeafIssuer(readFileSync(other.cert, 'utf8'), readFileSync(ca.key, 'utf8')), CaError, 'a key of another CA is refused');
});

t.test('ensureCa never writes through a link planted in its directory', async (t) => {
  const dir = join(tmp.path, 'ca3');
  mkdirSync(dir);
  const victim = join(tmp.path, 'victim.txt');
  writeFileSync(victim, 'untouched');
  symlinkSync(victim, join(dir, 'ca-key.pem.tmp'));
  symlinkSync(victim, join(dir, 'ca.pem'));
  ensureCa(dir, 'p');
  t.equal(readFileSync(victim, 'utf8'), 'untouched');
  t.ok(statSync(join(dir, 'ca.pem')).isFile());
});

const cred = (o: Record<string, unknown> = {}) =>
  credentialSchema.parse({ name: 'openai', host: 'api.openai.com', value: 'sk-real', ...o });

t.test('rewrite: exactly one header with exactly the sentinel is replaced; everything else is not', async (t) => {
  const c = cred();
  const h = (...kv: string[]) => ['host', 'api.openai.com', ...kv];
  t.same(rewriteCredential(h('Authorization', `Bearer ${SENTINEL}`), c), {
    ok: true,
    headers: h('Authorization', 'Bearer sk-real'),
    use: 'injected',
  });
  t.match(rewriteCredential(h('authorization', `bearer ${SENTINEL}`), c), { ok: true, use: 'injected' }, 'scheme in any case');
  t.match(rewriteCredential(h('AUTHORIZATION', ` Bearer ${SENTINEL} `), c), { ok: true, use: 'injected' }, 'surrounding spaces');
  for (const v of [
    `Bearer ${SENTINEL}x`,
    `Bearer ${SENTINEL.toUpperCase()}`,
    `Bearer  ${SENTINEL}`,
    `Basic ${SENTINEL}`,
    SENTINEL,
    'Bearer sk-other',
    '',
  ]) {
    const r = rewriteCredential(h('Authorization', v), c);
    t.match(r, { ok: true, use: 'foreign', headers: h('Authorization', v) }, `forwarded unchanged: ${JSON.stringify(v)}`);
  }
  t.match(rewriteCredential(h(), c), { ok: true, use: 'absent', headers: h() });
  for (const [a, b] of [
    ['Authorization', 'authorization'],
    ['authorization', 'Authorization'],
    ['Authorization', 'Authorization'],
  ]) {
    t.match(
      rewriteCredential(h(a!, `Bearer ${SENTINEL}`, b!, 'Bearer sk-x'), c),
      { ok: false, use: 'duplicate', status: 400 },
      `${a} + ${b}`,
    );
    t.match(
      rewriteCredential(h(a!, `Bearer ${SENTINEL}`, b!, `Bearer ${SENTINEL}`), c),
      { ok: false, use: 'duplicate' },
      'two sentinels too',
    );
  }
  t.match(rewriteCredential(h('Authorization', 'Bearer sk-other'), cred({ foreign: 'refuse' })), {
    ok: false,
    use: 'foreign',
    status: 403,
    reason: 'foreign-credential',
  });
  const gh = cred({ name: 'gh', header: 'X-Api-Token', format: 'token {value}', value: 'ghp_x' });
  t.match(
    rewriteCredential(h('x-api-token', `token ${SENTINEL}`, 'Authorization', `Bearer ${SENTINEL}`), gh),
    { ok: true, use: 'injected', headers: h('x-api-token', 'token ghp_x', 'Authorization', `Bearer ${SENTINEL}`) },
    'another header: only it',
  );
  const git = cred({ format: 'basic:x-access-token', value: 'ghp_y' });
  t.equal(headerValue(git.format, 'ghp_y'), `Basic ${Buffer.from('x-access-token:ghp_y').toString('base64')}`);
  t.match(rewriteCredential(h('Authorization', headerValue(git.format, SENTINEL)), git), {
    ok: true,
    use: 'injected',
    headers: h('Authorization', headerValue(git.format, 'ghp_y')),
  });
  t.equal(headerValue('Bearer {value}', '$&$1'), 'Bearer $&$1', 'a value is never a replacement pattern');
});

t.test('the credentials file: validated, errors never carry a value', async (t) => {
  const ok = parseCredentials(JSON.stringify({ v: 1, credentials: [{ name: 'openai', host: 'API.OpenAI.com.', value: 'sk-1' }] }));
  t.match(ok[0], { host: 'api.openai.com', port: 443, header: 'authorization', format: 'Bearer {value}', foreign: 'forward' });
  const bad = (c: unknown, re: RegExp) => {
    try {
      parseCredentials(JSON.stringify({ v: 1, credentials: [c] }));
      t.fail('accepted');
    } catch (e) {
      t.ok(e instanceof CredentialsError);
      t.match((e as Error).message, re);
      t.notMatch((e as Error).message, /sk-secret/, 'no value in the message');
    }
  };
  bad({ name: 'a', host: 'x.test', value: 'sk-secret\r\nX-Evil: 1' }, /control characters/);
  bad({ name: 'a', host: '1.2.3.4', value: 'sk-secret' }, /IP address/);
  bad({ name: 'a', host: 'x.test', value: 'sk-secret', format: 'Bearer' }, /\{value\}/);
  bad({ name: 'a', host: 'x.test', value: 'sk-secret', header: 'bad header' }, /header/);
  bad({ name: 'a', host: 'x.test', value: 'sk-secret', extra: 1 }, /Unrecognized|unrecognized/);
  for (const header of ['Host', 'content-length', 'Transfer-Encoding', 'proxy-authorization', 'upgrade'])
    bad({ name: 'a', host: 'x.test', value: 'sk-secret', header }, /cannot carry a credential/);
  t.throws(
    () => parseCredentials('{"v":1,"credentials":[{"name":"a","host":"x.test","value":"1"},{"name":"b","host":"X.test","value":"2"}]}'),
    /two credentials for x\.test:443/,
  );
  t.throws(() => parseCredentials('not json sk-secret'), { message: 'the credentials file is not JSON' });
});

t.test('auth.json: an API key, or ChatGPT tokens (never read out)', async (t) => {
  t.same(authKind('{"OPENAI_API_KEY":"sk-1"}'), { kind: 'apikey', key: 'sk-1' });
  t.same(authKind('{"auth_mode":"apikey","OPENAI_API_KEY":"sk-1","tokens":{"access_token":"a"}}'), { kind: 'apikey', key: 'sk-1' });
  t.same(authKind('{"OPENAI_API_KEY":null,"tokens":{"id_token":"x","access_token":"a","refresh_token":"r"}}'), { kind: 'chatgpt' });
  t.same(authKind('{"auth_mode":"chatgpt","OPENAI_API_KEY":"sk-1","tokens":{"access_token":"a"}}'), { kind: 'chatgpt' });
  t.match(authKind('nope'), { kind: 'unreadable' });
  t.match(authKind('[]'), { kind: 'unreadable' });
});

t.test('the model: inject when a key is available; mount for ChatGPT; explicit modes', async (t) => {
  const plan = (requested: 'auto' | 'inject' | 'mount' | 'none', env: Record<string, string>, auth?: ReturnType<typeof authKind>) =>
    planCredentials({ requested, env, auth, secrets: [] });
  const a = plan('auto', { OPENAI_API_KEY: 'sk-env' });
  t.match(a, {
    mode: 'inject',
    mountAuthFile: false,
    passKeys: false,
    credentials: [{ name: 'openai', host: 'api.openai.com', value: 'sk-env' }],
  });
  t.match(a.sandboxEnv, {
    CODEX_API_KEY: SENTINEL,
    OPENAI_API_KEY: SENTINEL,
    CODEX_CA_CERTIFICATE: '/opt/codex-egress/ca.pem',
    NODE_EXTRA_CA_CERTS: '/opt/codex-egress/ca.pem',
    SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
  });
  t.notOk(JSON.stringify(a.sandboxEnv).includes('sk-env'), 'the sandbox env holds no key');
  t.match(plan('auto', { CODEX_API_KEY: 'sk-c', OPENAI_API_KEY: 'sk-o' }), { credentials: [{ value: 'sk-c' }] }, 'CODEX_API_KEY first');
  t.match(plan('auto', {}, { kind: 'apikey', key: 'sk-file' }), { mode: 'inject', credentials: [{ value: 'sk-file' }] });
  t.match(plan('auto', {}, { kind: 'chatgpt' }), { mode: 'mount', mountAuthFile: true, passKeys: true, credentials: [] });
  t.match(plan('auto', {}), { mode: 'none', credentials: [] });
  t.match(
    plan('auto', {}, { kind: 'unreadable', detail: 'neither' }),
    { mode: 'mount', mountAuthFile: true },
    'an auth.json of another kind is mounted as before',
  );
  t.match(
    plan('auto', { CODEX_API_KEY: 'sk-c' }, { kind: 'chatgpt' }),
    { mode: 'inject', mountAuthFile: false },
    'a key wins: the tokens stay out',
  );
  t.match(plan('mount', { OPENAI_API_KEY: 'sk-env' }), { mode: 'mount', passKeys: true, credentials: [] });
  t.match(plan('none', { OPENAI_API_KEY: 'sk-env' }), { mode: 'none', passKeys: false, mountAuthFile: false });
  t.throws(() => plan('inject', {}, { kind: 'chatgpt' }), /ChatGPT sign-in cannot be injected/);
  const s = planCredentials({
    requested: 'mount',
    env: {},
    secrets: [{ credential: { name: 'gh', host: 'api.github.com', value: 'ghp' }, env: 'GH_TOKEN' }],
  });
  t.match(s, { mode: 'mount', credentials: [{ name: 'gh' }], sandboxEnv: { GH_TOKEN: SENTINEL } }, 'secrets in mount mode too');
});

t.test('writeInjection: the gateway gets the values (0640), the sandbox the CA certificate only', async (t) => {
  const p = projectFor(join(tmp.path, 'proj'));
  const paths = statePaths(p, { CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state') });
  const c = credentialPaths(paths);
  const plan = planCredentials({ requested: 'auto', env: { OPENAI_API_KEY: 'sk-write-test' }, secrets: [] });
  const w = await writeInjection(c, paths.dir, p, plan);
  t.same(w.gatewayArgs, ['--credentials', '/etc/codex/credentials/credentials.json', '--ca-dir', '/etc/codex/credentials/ca']);
  t.same(w.mount, { host: c.trustCert, container: '/opt/codex-egress/ca.pem', readOnly: true });
  t.equal(statSync(c.file).mode & 0o777, 0o640);
  t.same(readdirSync(c.trustDir), ['ca.pem'], 'the sandbox view: the certificate, nothing else');
  t.notMatch(readFileSync(c.trustCert, 'utf8'), /PRIVATE KEY|sk-write-test/);
  t.equal(readFileSync(c.trustCert, 'utf8'), readFileSync(join(c.caDir, 'ca.pem'), 'utf8'));
  await writeInjection(c, paths.dir, p, planCredentials({ requested: 'none', env: {}, secrets: [] }));
  t.notOk(existsSync(c.file), 'nothing to inject: the values are removed');
});

t.test('codex-egress secret: set (command or stdin), list without values, rm; in the state directory only', async (t) => {
  const state = join(tmp.path, 'cli-state');
  const work = join(tmp.path, 'work');
  mkdirSync(work);
  const cli = (args: string[]) => cliInProcess([...args, '--workdir', work], state);
  let r = await cli([
    'secret',
    'set',
    'github',
    '--host',
    'api.github.com',
    '--format',
    'token {value}',
    '--command',
    'echo ghp_from_command',
    '--env',
    'GH_TOKEN',
  ]);
  t.equal(r.code, 0, r.stderr);
  r = await cli(['secret', 'list', '--json']);
  const listed = JSON.parse(r.stdout) as { secrets: Array<Record<string, unknown>> };
  t.match(listed.secrets, [
    { name: 'github', host: 'api.github.com', port: 443, source: 'command: echo ghp_from_command', env: 'GH_TOKEN' },
  ]);
  t.equal(
    (await cli(['secret', 'set', 'x', '--host', 'api.github.com', '--command', 'true'])).code,
    2,
    'a second secret for the same host',
  );
  t.equal((await cli(['secret', 'set', 'x', '--host', 'h.test'])).code, 2, 'a source is required');
  t.equal((await cli(['secret', 'set', 'x', '--host', 'h.test', '--command', 'a', '--format', 'nope'])).code, 2, 'a bad format');
  t.equal((await cli(['secret', 'set', 'openai', '--host', 'h.test', '--command', 'a'])).code, 2, 'openai is reserved');
  t.equal(
    (await cli(['secret', 'set', 'x', '--host', 'h.test', '--command', 'a', '--env', 'CODEX_API_KEY'])).code,
    2,
    'not a key variable of Codex',
  );
  t.same(readdirSync(work), [], 'nothing in the workdir');
  const { resolveSecrets } = await import('../cli/secret.js');
  const file = credentialPaths(statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state })).secrets;
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.match(await resolveSecrets(file), [
    { credential: { name: 'github', value: 'ghp_from_command', format: 'token {value}' }, env: 'GH_TOKEN' },
  ]);
  t.equal((await cli(['secret', 'rm', 'github'])).code, 0);
  t.same(await resolveSecrets(file), []);
  t.equal((await cli(['secret', 'set', 'bad', '--host', 'h.test', '--command', 'echo sk-leak-me; exit 3'])).code, 0);
  await t.rejects(resolveSecrets(file), /secret bad: its command failed \(exit 3\)/);
  try {
    await resolveSecrets(file);
  } catch (e) {
    t.notMatch((e as Error).message, /sk-leak-me/, 'the command output is never in the error');
  }
});
