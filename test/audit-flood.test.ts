// The audit log against a hostile sandbox, through the real gateway in a namespace (test/harness/core.ts):
// - names and hosts carrying terminal escapes (dig's \DDD bytes in a label; raw bytes in a CONNECT target)
//   are printed escaped by `codex-egress logs`, and `logs --json` stays valid JSON;
// - a flood of about 20,000 denied queries a second (a UDP loop on the namespace's loopback, bounded in
//   time) becomes a bounded number of lines whose counts add up to every query answered.
import t from 'tap';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { startCore, dig, nodeIn, type Core } from './harness/core.js';
import { CLI, type AuditLine } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';

/** Everything that must never reach the terminal raw (the line feeds between lines aside). */
const HIDDEN = /(?!\n)[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;

let core: Core;
t.before(async () => {
  core = await startCore();
});
t.teardown(() => core?.close());

const lines = () =>
  readFileSync(core.gateway.auditPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditLine);

/** Run `codex-egress logs` on a copy of the gateway's log placed where a project keeps it. */
async function logsCommand(args: string[]) {
  const state = join(core.dir, 'state');
  const work = join(core.dir, 'project');
  mkdirSync(work, { recursive: true });
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  mkdirSync(paths.logDir, { recursive: true });
  copyFileSync(core.gateway.auditPath, paths.auditLog);
  return execa(process.execPath, [CLI, 'logs', '--workdir', work, ...args], {
    env: { CODEX_EGRESS_STATE_DIR: state },
    reject: false,
    timeout: 30_000,
  });
}

t.test('a query name with terminal escapes, through the real DNS server, is printed escaped', async (t) => {
  // ESC [2K CR ESC [32m "ALLOW", the 8-bit CSI (155), U+202E as UTF-8 bytes (226 128 174), BS, DEL, NUL, TAB.
  const name = '\\027[2K\\013\\027[32mALLOW\\155x\\226\\128\\174y\\008\\127\\000\\009z.evil.test';
  const d = await dig(core.ns, name);
  t.equal(d.status, 'NXDOMAIN', 'denied');
  const raw = '\x1b[2K\r\x1b[32mALLOW\x9bx\xe2\x80\xaey\b\x7f\x00\tz.evil.test';
  const logged = await core.gateway.waitForAudit((e) => e.event === 'dns' && typeof e.name === 'string' && e.name.endsWith('z.evil.test'));
  t.equal(logged.name, raw, 'the audit line holds the name byte for byte (each byte one character)');

  const human = await logsCommand([]);
  t.equal(human.exitCode, 0, human.stderr);
  t.notMatch(human.stdout, HIDDEN, 'no hidden character reaches the terminal');
  // (â and ® are the visible latin1 characters of bytes 226 and 174; byte 128 is a C1 control)
  t.match(human.stdout, 'dns      \\x1B[2K\\x0D\\x1B[32mALLOW\\x9Bxâ\\x80®y\\x08\\x7F\\x00\\x09z.evil.test A → NXDOMAIN');
  t.equal(human.stdout.split('\n').filter((l) => l.includes('z.evil.test')).length, 1, 'one line, not split by the CR');

  const json = await logsCommand(['--json']);
  t.notMatch(json.stdout, HIDDEN, 'nor through --json');
  const parsed = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditLine);
  t.ok(
    parsed.some((e) => e.name === raw),
    '--json is valid JSON with the same value',
  );
});

t.test('CONNECT and plain-HTTP targets with control and C1 bytes are printed escaped too', async (t) => {
  // Raw bytes as the sandbox would send them; whatever the parser accepts ends up in a line, whatever it
  // refuses gets a 400. The CLI must print every accepted one escaped.
  const targets = [
    'CONNECT \\x9b2K\\xe2\\x80\\xae.evil.test:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n',
    'CONNECT a\\x1b[2Kb.evil.test:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n',
    'CONNECT c\\x85d\\x7f.evil.test:443 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n',
    'GET http://e\\x9bf\\xc2\\x9b.evil.test/ HTTP/1.1\\r\\nHost: e\\x9bf\\xc2\\x9b.evil.test\\r\\n\\r\\n',
    'GET http://allowed.test/ HTTP/1.1\\r\\nHost: allowed.test\\x9b\\x85\\xe2\\x80\\xae\\r\\n\\r\\n',
    'GET http://allowed.test/ HTTP/1.1\\r\\nHost: a\\tb\\r\\n\\r\\n',
    'CONNECT allowed.test:443 HTTP/1.1\\r\\nHost: allowed.test\\x9b\\r\\n\\r\\n',
  ];
  const script = `import net from 'node:net';
    const targets = ${JSON.stringify(targets)}.map((s) => Buffer.from(JSON.parse('"' + s.replace(/\\\\x/g, '\\\\u00') + '"'), 'latin1'));
    const out = [];
    for (const req of targets) {
      out.push(await new Promise((resolve) => {
        const s = net.connect(3128, '127.0.0.1', () => s.write(req));
        let got = '';
        s.on('data', (d) => { got += d.toString('latin1'); });
        s.on('close', () => resolve(got.split('\\r\\n')[0]));
        s.on('error', () => {});
        setTimeout(() => s.destroy(), 3000);
      }));
    }
    console.log(JSON.stringify(out));`;
  const replies = await nodeIn<string[]>(core.ns, script);
  t.comment(`replies: ${JSON.stringify(replies)}`);
  t.ok(
    replies.slice(0, 4).every((r) => r.startsWith('HTTP/1.1 400')),
    "raw bytes in a request target: refused by Node's parser (400), nothing logged",
  );
  t.equal(replies[4], 'HTTP/1.1 403 Forbidden', 'a Host header with C1 bytes: host-mismatch');
  await new Promise((r) => setTimeout(r, 500));
  const hasHidden = (e: AuditLine) => Object.values(e).some((v) => typeof v === 'string' && /[\x00-\x1f\x7f-\x9f]/.test(v));
  const hostile = lines().filter((e) => (e.event === 'connect' || e.event === 'http') && hasHidden(e));
  t.ok(
    hostile.length >= 1,
    `lines with sandbox-chosen control bytes reached the audit log (${hostile.length}: the Host header in "detail", quoted)`,
  );
  const human = await logsCommand([]);
  t.notMatch(human.stdout, HIDDEN, 'printed without any hidden character');
  t.match(human.stdout, 'host-mismatch (Host: "allowed.test\\x9B\\x85â\\x80®")', 'the Host header, quoted and escaped');
  t.match(human.stdout, 'host-mismatch (Host: "a\\\\tb")');

  const json = await logsCommand(['--json']);
  t.notMatch(json.stdout, HIDDEN);
  const parsed = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditLine);
  for (const e of hostile)
    t.ok(
      parsed.some((p) => p.detail === e.detail && p.time === e.time),
      '--json keeps the exact value',
    );
});

/** Send denied queries from one UDP socket for `ms`, paced at `rate` a second (at most 512 unanswered). */
const floodScript = (names: 'same' | 'random' | 'allowed', rate: number, ms: number, port = 53) => `import dgram from 'node:dgram';
  const sock = dgram.createSocket('udp4');
  const query = (id, name) => {
    const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
    const head = Buffer.alloc(12); head.writeUInt16BE(id, 0); head.writeUInt16BE(0x0100, 2); head.writeUInt16BE(1, 4);
    return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
  };
  let sent = 0, received = 0, nx = 0, ok = 0;
  sock.on('message', (m) => { received++; if ((m[3] & 15) === 3) nx++; else if ((m[3] & 15) === 0) ok++; });
  const start = Date.now();
  const tick = () => {
    const elapsed = Date.now() - start;
    if (elapsed >= ${ms}) return finish();
    const due = Math.floor(elapsed * ${rate} / 1000);
    while (sent < due && sent - received < 512) {
      const name = ${{ same: "'flood.denied.test'", random: "'r' + sent + '.flood.test'", allowed: "'cache.test'" }[names]};
      sock.send(query(sent & 0xffff, name), ${port}, '127.0.0.1');
      sent++;
    }
    setImmediate(tick);
  };
  const finish = () => {
    const wait = Date.now();
    const done = () => {
      if (received < sent && Date.now() - wait < 3000) return setTimeout(done, 50);
      console.log(JSON.stringify({ sent, received, nx, ok, ms: Date.now() - start }));
      sock.close();
    };
    done();
  };
  tick();`;

t.test('a flood of denied queries: a bounded number of lines, counts adding up to every answer', async (t) => {
  const before = statSync(core.gateway.auditPath).size;
  const same = await nodeIn<{ sent: number; received: number; nx: number; ms: number }>(core.ns, floodScript('same', 20_000, 3000), 60_000);
  t.comment(`same name: ${JSON.stringify(same)} (${Math.round((same.received / same.ms) * 1000)} answers/s)`);
  t.ok(same.received > 5_000, 'thousands of queries answered (the rate depends on the machine)');
  t.equal(same.nx, same.received, 'every one NXDOMAIN');
  const random = await nodeIn<{ sent: number; received: number; nx: number; ms: number }>(
    core.ns,
    floodScript('random', 20_000, 2000),
    60_000,
  );
  t.comment(`made-up names: ${JSON.stringify(random)}`);
  t.ok(random.received > 3_000);

  // The proxy's neighbouring path: denied plain-HTTP requests (each answered 403 and closed), 16 at a time.
  const http = await nodeIn<{ sent: number; denied: number }>(
    core.ns,
    `import net from 'node:net';
    let sent = 0, denied = 0;
    const one = () => new Promise((resolve) => {
      const s = net.connect(3128, '127.0.0.1', () => s.write('GET http://denied.test/x HTTP/1.1\\r\\nHost: denied.test\\r\\n\\r\\n'));
      let got = '';
      s.on('data', (d) => { got += d; });
      s.on('close', () => { if (got.startsWith('HTTP/1.1 403')) denied++; resolve(); });
      s.on('error', () => {});
    });
    const end = Date.now() + 3000;
    await Promise.all(Array.from({ length: 16 }, async () => { while (Date.now() < end && sent < 3000) { sent++; await one(); } }));
    console.log(JSON.stringify({ sent, denied }));`,
    60_000,
  );
  t.comment(`denied HTTP requests: ${JSON.stringify(http)}`);
  t.ok(http.denied > 200 && http.denied === http.sent, 'every request refused with 403');

  // Stop: pending counts are flushed before the stop line.
  await core.gateway.stop('SIGTERM');
  const all = lines();
  t.match(all.at(-1), { event: 'stop' });
  const sameLines = all.filter((e) => e.name === 'flood.denied.test');
  const sameFull = sameLines.filter((e) => e.event === 'dns');
  const sameRepeats = sameLines.filter((e) => e.event === 'repeat');
  t.equal(sameFull.length, 1, 'the first query in full, once (the whole flood lasts less than a window)');
  t.ok(sameRepeats.length >= 1 && sameRepeats.length <= 2, `${sameRepeats.length} repeat lines`);
  const sameCount = sameFull.length + sameRepeats.reduce((n, e) => n + (e.count as number), 0);
  t.ok(
    sameCount >= same.received && sameCount <= same.sent,
    `counted ${sameCount}: every answered query (${same.received}) and no more than were sent (${same.sent})`,
  );
  if (same.received === same.sent) t.equal(sameCount, same.sent, 'exactly');
  t.match(sameRepeats[0], { of: 'dns', client: '127.0.0.1', qtype: 'A', decision: 'deny', reason: 'not-allowlisted', rcode: 'NXDOMAIN' });

  const randomFull = all.filter((e) => e.event === 'dns' && typeof e.name === 'string' && e.name.endsWith('.flood.test'));
  const suppressed = all.filter((e) => e.event === 'suppressed' && e.of === 'dns');
  t.ok(randomFull.length <= 300, `${randomFull.length} made-up names in full (at most 100 per client and event per window)`);
  t.ok(suppressed.length >= 1 && suppressed.length <= 3, `${suppressed.length} suppressed lines`);
  t.ok((suppressed[0]!.sample as string[]).length > 0, 'with a sample of the names');
  const randomCount = randomFull.length + suppressed.reduce((n, e) => n + (e.count as number), 0);
  t.ok(
    randomCount >= random.received && randomCount <= random.sent,
    `counted ${randomCount} of ${random.received} answered / ${random.sent} sent`,
  );

  const httpLines = all.filter((e) => e.host === 'denied.test' && (e.event === 'http' || (e.event === 'repeat' && e.of === 'http')));
  t.ok(httpLines.length <= 3, `${httpLines.length} lines for the denied HTTP requests`);
  t.match(httpLines[0], { event: 'http', decision: 'deny', reason: 'not-allowlisted', status: 403 });
  t.equal(
    httpLines.reduce((n, e) => n + (e.event === 'repeat' ? (e.count as number) : 1), 0),
    http.denied,
    'counted: every denied request',
  );

  const grown = statSync(core.gateway.auditPath).size - before;
  t.ok(
    grown < 200_000,
    `the log grew ${grown} bytes for ${same.received + random.received + http.denied} denials (one line each would be ~${(same.received + random.received + http.denied) * 200})`,
  );
});

t.test('the real gateway rotates its log; logs -f follows across the rotations and misses nothing', async (t) => {
  const state = join(core.dir, 'state-rot');
  const work = join(core.dir, 'project-rot');
  mkdirSync(work, { recursive: true });
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  mkdirSync(paths.logDir, { recursive: true });
  const follower = execa(process.execPath, [CLI, 'logs', '-f', '--json', '--workdir', work], {
    env: { CODEX_EGRESS_STATE_DIR: state },
    reject: false,
    timeout: 120_000,
  });
  let followed = '';
  follower.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
  t.teardown(() => void follower.kill('SIGKILL'));
  // 64 KiB files, 5 kept; the first gateway has stopped, this one takes other ports.
  const gw = await core.extraGateway([
    '--upstream',
    '198.51.100.53',
    '--dns-port',
    '5354',
    '--proxy-port',
    '3129',
    '--audit-log',
    paths.auditLog,
    '--audit-log-max-size',
    '0.0625',
    '--audit-log-keep',
    '5',
  ]);
  const load = await nodeIn<{ sent: number; received: number; ok: number }>(core.ns, floodScript('allowed', 500, 4000, 5354), 60_000);
  t.comment(`allowed queries: ${JSON.stringify(load)}`);
  t.equal(load.ok, load.received, 'every one answered NOERROR');
  await gw.stop('SIGTERM');
  for (let i = 0; i < 100 && !/"event":"stop"/.test(followed); i++) await new Promise((r) => setTimeout(r, 100));
  follower.kill('SIGINT');
  const f = await follower;
  t.equal(f.exitCode, 0, 'logs -f ends cleanly on SIGINT');

  const files = readdirSync(paths.logDir).sort();
  t.same(
    files,
    ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2', 'audit.jsonl.3', 'audit.jsonl.4', 'audit.jsonl.5'],
    'the live file and 5 rotated ones, the older ones deleted',
  );
  for (const name of files) {
    const text = readFileSync(join(paths.logDir, name), 'utf8');
    t.ok(
      text.endsWith('\n') &&
        text
          .split('\n')
          .filter(Boolean)
          .every((l) => JSON.parse(l)),
      `${name}: whole JSON lines`,
    );
  }
  const seen = followed
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditLine);
  const answers = seen.filter((e) => e.event === 'dns' && e.name === 'cache.test');
  t.equal(answers.length, load.received, `logs -f printed every one of the ${load.received} answers once, across the rotations`);
  t.match(seen.at(-1), { event: 'stop' });
  t.match(seen[0], { event: 'start' }, 'from the first line of the first file');
});
