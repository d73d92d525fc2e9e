// The allowlist policy: rule syntax, normalisation, matching, provenance. Pure code, no I/O.
import t from 'tap';
import { parseRuleFile, parseRuleList } from '../proxy/policy/rules.js';
import { Allowlist, mergeSources } from '../proxy/policy/allowlist.js';
import { normalizeName } from '../proxy/policy/names.js';

const list = (...rules: string[]) => {
  const r = parseRuleList(rules, 'flag', '--allow');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return new Allowlist(r.rules);
};

t.test('normalisation: every spelling of a name becomes one', async (t) => {
  for (const spelling of ['GitHub.com', 'github.com.', 'GITHUB.COM.', 'github\u3002com']) {
    t.same(normalizeName(spelling), { ok: true, name: 'github.com' }, spelling);
  }
  t.same(normalizeName('bücher.example'), { ok: true, name: 'xn--bcher-kva.example' }, 'IDN to punycode');
  t.same(normalizeName('xn--bcher-kva.example'), { ok: true, name: 'xn--bcher-kva.example' }, 'punycode stays');
  for (const ip of ['127.0.0.1', '2130706433', '0x7f.1', '127.1', '0177.0.0.1', '[::1]', '::ffff:127.0.0.1', '1.2.3.4.', '10.0.0.0x1']) {
    t.equal(normalizeName(ip).ok ? 'name' : (normalizeName(ip) as { reason: string }).reason, 'ip-literal', ip);
  }
  for (const bad of [
    '',
    '.',
    'github..com',
    '-a.com',
    'a-.com',
    'git hub.com',
    'github.com%00',
    'git_hub.com',
    'a/b.com',
    'user@github.com',
    'github.com:443',
    '*.github.com',
    'a'.repeat(64) + '.com',
    `${'a.'.repeat(127)}com`,
  ]) {
    t.equal(normalizeName(bad).ok, false, JSON.stringify(bad));
  }
});

t.test('rule syntax', async (t) => {
  const r = parseRuleList(
    ['example.com', '*.example.org', '.example.net', 'example.io:8443', '!bad.example.com', '!*.x.example.org:22'],
    'flag',
    '--allow',
  );
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(
    r.rules.map((x) => [x.name, x.scope, x.port, x.deny]),
    [
      ['example.com', 'exact', undefined, false],
      ['example.org', 'subdomains', undefined, false],
      ['example.net', 'tree', undefined, false],
      ['example.io', 'exact', 8443, false],
      ['bad.example.com', 'exact', undefined, true],
      ['x.example.org', 'subdomains', 22, true],
    ],
  );
  const rejected: Array<[string, RegExp]> = [
    ['*', /bare wildcard/],
    ['*.com', /public suffix/],
    ['.co.uk', /public suffix/],
    ['*.github.io', /public suffix/],
    ['com', /public suffix/],
    ['1.2.3.4', /IP addresses/],
    ['[::1]:443', /IP addresses/],
    ['2130706433', /IP addresses/],
    ['https://github.com/', /URL/],
    ['github.com/path', /URL/],
    ['exa mple.com', /not a valid host name/],
    ['foo.*.com', /first label/],
    ['**.example.com', /first label/],
    ['example.com:0', /port/],
    ['example.com:65536', /port/],
    ['example.com:http', /port/],
    ['!', /empty|bare wildcard/],
  ];
  for (const [text, why] of rejected) {
    const x = parseRuleList([text], 'flag', '--allow');
    t.notOk(x.ok, `${text} rejected`);
    if (!x.ok) t.match(x.errors[0], why, text);
  }
});

t.test('the file format names the bad line', async (t) => {
  const ok = parseRuleFile('# comment\n\nexample.com   # inline\r\n*.example.org\n', '/x/allowed_domains.txt');
  t.ok(ok.ok);
  if (ok.ok)
    t.same(
      ok.rules.map((r) => r.origin),
      ['/x/allowed_domains.txt:3', '/x/allowed_domains.txt:4'],
    );
  const bad = parseRuleFile('example.com\n*.com\nhttp://x.example\n', 'f.txt');
  t.notOk(bad.ok);
  if (!bad.ok) {
    t.equal(bad.errors.length, 2);
    t.match(bad.errors[0], /^f\.txt:2: /);
    t.match(bad.errors[1], /^f\.txt:3: /);
  }
  t.notOk(parseRuleFile('a.example.com\u0000', 'bin').ok, 'binary file refused');
});

t.test('matching by labels: exact, subdomains, tree', async (t) => {
  const a = list('example.com', '*.wild.example', '.tree.example');
  const dns = (h: string) => a.decide(h, 'dns').allow;
  t.ok(dns('example.com'));
  t.ok(dns('EXAMPLE.com.'), 'other spelling');
  t.notOk(dns('www.example.com'), 'exact rule: no subdomain');
  t.notOk(dns('evilexample.com'), 'no suffix match without a dot');
  t.notOk(dns('example.com.evil.net'));
  t.notOk(dns('wild.example'), '*. rule: not the apex');
  t.ok(dns('a.wild.example'));
  t.ok(dns('a.b.wild.example'));
  t.notOk(dns('awild.example'));
  t.ok(dns('tree.example'), '. rule: the apex');
  t.ok(dns('x.y.tree.example'), '. rule: subdomains');
  t.notOk(dns('xtree.example'));
  t.same(a.decide('127.0.0.1', 'dns'), { allow: false, reason: 'ip-literal' });
  t.same(a.decide('bad..name', 'dns'), { allow: false, reason: 'invalid-host' });
});

t.test('ports: 443 via CONNECT, 80 via HTTP, others only when a rule names them', async (t) => {
  const a = list('example.com', 'ssh.example.com:22', 'both.example.com', 'both.example.com:8443');
  t.equal(a.decide('example.com', 'connect', 443).reason, 'allowed');
  t.equal(a.decide('example.com', 'http', 80).reason, 'allowed');
  t.equal(a.decide('example.com', 'connect', 80).reason, 'port-not-allowed');
  t.equal(a.decide('example.com', 'http', 443).reason, 'port-not-allowed');
  t.equal(a.decide('example.com', 'connect', 8443).reason, 'port-not-allowed');
  t.equal(a.decide('ssh.example.com', 'connect', 22).reason, 'allowed');
  t.equal(a.decide('ssh.example.com', 'connect', 443).reason, 'port-not-allowed', 'a port rule allows only that port');
  t.ok(a.decide('ssh.example.com', 'dns').allow, 'a port rule still resolves');
  t.ok(a.decide('both.example.com', 'connect', 443).allow);
  t.ok(a.decide('both.example.com', 'connect', 8443).allow);
});

t.test('deny always wins, whatever the order or source', async (t) => {
  const a = list('.example.com', '!secret.example.com', '!*.internal.example.com', '!example.com:8080', 'example.com:8080');
  t.ok(a.decide('www.example.com', 'connect', 443).allow);
  const d = a.decide('SECRET.example.com.', 'connect', 443);
  t.same([d.allow, d.reason, d.rule?.text], [false, 'denied-by-rule', '!secret.example.com']);
  t.notOk(a.decide('secret.example.com', 'dns').allow, 'a port-less deny also stops DNS');
  t.notOk(a.decide('a.internal.example.com', 'connect', 443).allow);
  t.ok(a.decide('internal.example.com', 'connect', 443).allow, '!*. does not deny the apex');
  t.equal(a.decide('example.com', 'connect', 8080).reason, 'denied-by-rule', 'deny beats allow on the same port');
  t.ok(a.decide('example.com', 'dns').allow, 'a port deny leaves DNS alone');
});

t.test('merge keeps provenance; defaults can be dropped; errors are collected', async (t) => {
  const file = parseRuleFile('from-file.example.com\n', '/etc/codex/allowed_domains.txt');
  const m = mergeSources({
    defaults: true,
    env: 'env1.example.com, env2.example.com\tenv3.example.com',
    flags: ['flag.example.com'],
    file,
  });
  t.ok(m.ok);
  if (!m.ok) return;
  t.same(
    m.allowlist.rules.map((r) => [r.text, r.source, r.origin]),
    [
      ['api.openai.com', 'default', 'built-in default'],
      ['auth.openai.com', 'default', 'built-in default'],
      ['chatgpt.com', 'default', 'built-in default'],
      ['env1.example.com', 'env', 'OPENAI_ALLOWED_DOMAINS'],
      ['env2.example.com', 'env', 'OPENAI_ALLOWED_DOMAINS'],
      ['env3.example.com', 'env', 'OPENAI_ALLOWED_DOMAINS'],
      ['flag.example.com', 'flag', '--allow'],
      ['from-file.example.com', 'file', '/etc/codex/allowed_domains.txt:1'],
    ],
  );
  t.same(m.allowlist.decide('from-file.example.com', 'connect', 443).rule, {
    text: 'from-file.example.com',
    source: 'file',
    origin: '/etc/codex/allowed_domains.txt:1',
  });
  const none = mergeSources({ defaults: false, flags: [] });
  t.ok(none.ok && !none.allowlist.decide('api.openai.com', 'dns').allow, '--no-defaults drops the OpenAI rules');
  const bad = mergeSources({ defaults: true, env: '*.com', flags: ['1.1.1.1'] });
  t.notOk(bad.ok);
  if (!bad.ok) t.equal(bad.errors.length, 2);
});

t.test('decide() remembers decisions per allowlist: the same answer as evaluating, for every spelling, way and port', async (t) => {
  const a = list('allowed.test', 'ssh.allowed.test:22', '!bad.allowed.test', '.tree.test', '*.sub.test');
  const b = list('other.test');
  const hosts = [
    'allowed.test',
    'ALLOWED.test.',
    'bad.allowed.test',
    'BAD.allowed.test',
    'ssh.allowed.test',
    'x.tree.test',
    'tree.test',
    'sub.test',
    'a.sub.test',
    'other.test',
    '127.0.0.1',
    'allowed.test ',
    '',
    'allo\u00adwed.test',
  ];
  const ways: Array<['dns' | 'connect' | 'http', number | undefined]> = [
    ['dns', undefined],
    ['connect', 443],
    ['connect', 22],
    ['connect', 8443],
    ['http', 80],
    ['http', 443],
  ];
  for (let round = 0; round < 2; round++) {
    for (const h of hosts) {
      for (const [via, port] of ways) {
        t.same(a.decide(h, via, port), a.evaluate(h, via, port), `${JSON.stringify(h)} ${via} ${port} (round ${round})`);
        t.same(b.decide(h, via, port), b.evaluate(h, via, port), `other allowlist: ${JSON.stringify(h)} ${via} ${port}`);
      }
    }
  }
  t.equal(a.decide('other.test', 'dns').allow, false, "a decision of one allowlist is not another's");
  t.equal(b.decide('other.test', 'dns').allow, true);
  for (let i = 0; i < 5000; i++) a.decide(`n${i}.tree.test`, 'dns');
  t.same(
    a.decide('bad.allowed.test', 'connect', 443),
    { allow: false, reason: 'denied-by-rule', host: 'bad.allowed.test', rule: a.evaluate('bad.allowed.test', 'connect', 443).rule },
    'still right after the memo filled and was cleared',
  );
  t.ok(Object.isFrozen(a.decide('allowed.test', 'connect', 443)), 'a remembered decision cannot be changed by a caller');
  const long = `${'a.'.repeat(150)}allowed.test`;
  t.same(a.decide(long, 'connect', 443), a.evaluate(long, 'connect', 443), 'an over-long input is decided (not remembered) the same way');
  t.equal(a.decide(long, 'connect', 443).allow, false);
});
