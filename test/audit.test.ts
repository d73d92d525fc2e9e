// The audit log's writer and readers, in process: repeated denials summarised with exact counts (a fake
// clock), size rotation with a kept history read back by the CLI's streaming readers, `tail -F` across
// rotations, and escaping of every hidden character a sandbox-chosen name could carry.
import t from 'tap';
import { appendFileSync, mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Summariser, type SummaryOptions } from '../proxy/audit-summary.js';
import { createAudit, type AuditEvent } from '../proxy/audit.js';
import { Tail, countDecisions, fileLines, formatLine, logEvents, logFiles, matches, MAX_LINE, scanLog } from '../cli/auditlog.js';
import { parseLine } from '../cli/audit-line.js';
import { printable, printableJson } from '../cli/printable.js';
import { cliInProcess } from './harness/cli.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';
import { tempDir } from './harness/world.js';

type Line = Record<string, unknown>;
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;
const HIDDEN_EXCEPT_LF = /(?!\n)[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;
const denyDns = (name: string, client = '10.0.0.3', extra: Partial<Extract<AuditEvent, { event: 'dns' }>> = {}): AuditEvent => ({
  event: 'dns',
  client,
  name,
  qtype: 'A',
  decision: 'deny',
  reason: 'not-allowlisted',
  rcode: 'NXDOMAIN',
  answers: [],
  ms: Math.random(),
  ...extra,
});

function summariser(opts: Partial<SummaryOptions> = {}) {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const lines: Line[] = [];
  const s = new Summariser(
    (e) => lines.push(e as unknown as Line),
    { windowMs: 10_000, perClient: 5, maxKeys: 100, sample: 3, ...opts },
    () => now,
  );
  return { s, lines, advance: (ms: number) => (now += ms) };
}

t.test('summary: the first denial in full at once, repeats counted into one line per window', async (t) => {
  const { s, lines, advance } = summariser();
  s.write(denyDns('flood.test'));
  t.equal(lines.length, 1, 'the first occurrence is written at once');
  t.match(lines[0], { event: 'dns', name: 'flood.test', decision: 'deny' });
  for (let i = 0; i < 999; i++) {
    advance(5);
    s.write(denyDns('flood.test'));
  }
  t.equal(lines.length, 1, 'identical denials (ms aside) are counted, not written');
  s.tick();
  t.equal(lines.length, 2);
  t.match(lines[1], {
    event: 'repeat',
    of: 'dns',
    client: '10.0.0.3',
    name: 'flood.test',
    qtype: 'A',
    decision: 'deny',
    reason: 'not-allowlisted',
    rcode: 'NXDOMAIN',
    count: 999,
    first: '2026-01-01T00:00:00.005Z',
    last: '2026-01-01T00:00:04.995Z',
  });
  t.notOk('ms' in lines[1]!, 'no ms on a summary');
  s.write(denyDns('flood.test'));
  s.tick();
  t.match(lines[2], { event: 'repeat', count: 1 }, 'a kind still active keeps being counted in the next window');
  s.tick();
  t.equal(lines.length, 3, 'a window without repeats writes nothing');
  s.tick();
  s.write(denyDns('flood.test'));
  t.equal(lines.length, 4, 'after a whole idle window the kind is forgotten: the next one is written in full');
  t.match(lines[3], { event: 'dns' });
});

t.test('summary: anything that differs is its own kind; allowed decisions and other events pass through', async (t) => {
  const { s, lines } = summariser({ perClient: 100 });
  s.write(denyDns('a.test'));
  s.write(denyDns('A.test'));
  s.write(denyDns('a.test', '10.0.0.4'));
  s.write(denyDns('a.test', '10.0.0.3', { qtype: 'AAAA' }));
  s.write(denyDns('a.test', '10.0.0.3', { reason: 'bad-request', rcode: 'FORMERR' }));
  t.equal(lines.length, 5, 'case, client, qtype, reason: each a kind of its own, in full');
  const allow: AuditEvent = {
    event: 'dns',
    client: '10.0.0.3',
    name: 'ok.test',
    qtype: 'A',
    decision: 'allow',
    reason: 'allowed',
    rcode: 'NOERROR',
    answers: ['203.0.113.1'],
    ms: 1,
  };
  const connect: AuditEvent = {
    event: 'connect',
    client: '10.0.0.3',
    host: 'x.test',
    port: 443,
    decision: 'deny',
    reason: 'not-allowlisted',
    status: 403,
  };
  for (let i = 0; i < 3; i++) {
    s.write(allow);
    s.write({ event: 'reload', ok: true, rules: 1, added: [], removed: [] });
    s.write(connect);
  }
  t.equal(lines.filter((l) => l.decision === 'allow').length, 3, 'allowed decisions are never summarised');
  t.equal(lines.filter((l) => l.event === 'reload').length, 3);
  t.equal(lines.filter((l) => l.event === 'connect').length, 1, 'a denied CONNECT is summarised too');
  s.write({ event: 'stop', signal: 'SIGTERM' });
  t.match(
    lines.at(-2),
    { event: 'repeat', of: 'connect', host: 'x.test', port: 443, count: 2 },
    'pending counts are flushed before the stop line',
  );
  t.match(lines.at(-1), { event: 'stop' }, 'the stop line is last');
});

t.test('summary: made-up names beyond the per-client budget are counted in one suppressed line; memory is bounded', async (t) => {
  const { s, lines, advance } = summariser({ perClient: 5, maxKeys: 9, sample: 3 });
  for (let i = 0; i < 10_000; i++) {
    advance(1);
    s.write(denyDns(`r${i}.test`));
  }
  t.equal(lines.length, 5, 'the first 5 new names in full');
  s.write({
    event: 'connect',
    client: '10.0.0.3',
    host: 'exfil.test',
    port: 443,
    decision: 'deny',
    reason: 'not-allowlisted',
    status: 403,
  });
  t.match(lines.at(-1), { event: 'connect', host: 'exfil.test' }, "a DNS flood does not use up the budget of the proxy's denials");
  lines.pop();
  t.ok(s.size <= 9, `kinds tracked: ${s.size}`);
  s.write(denyDns('x.test', '10.0.0.9'));
  s.write(denyDns('y.test', '10.0.0.9'));
  s.write(denyDns('z.test', '10.0.0.9'));
  s.write(denyDns('w.test', '10.0.0.9'));
  t.equal(lines.length, 8, 'another client has its own budget, within the global bound of kinds');
  s.tick();
  const sup = lines.filter((l) => l.event === 'suppressed');
  t.match(
    sup.find((l) => l.client === '10.0.0.3'),
    { of: 'dns', decision: 'deny', count: 9_995, sample: ['r5.test', 'r6.test', 'r7.test'] },
  );
  t.match(
    sup.find((l) => l.client === '10.0.0.9'),
    { count: 1, sample: ['w.test'] },
    'past maxKeys: counted, not tracked',
  );
  const total = lines.filter((l) => l.event === 'dns').length + sup.reduce((n, l) => n + (l.count as number), 0);
  t.equal(total, 10_004, 'every denial is accounted for: full lines plus counts');
  s.write(denyDns('r9999.test'));
  t.equal(lines.at(-1)!.event, 'suppressed', 'still past the bound of kinds: counted');
  s.tick();
  s.write(denyDns('r9999.test'));
  t.match(lines.at(-1), { event: 'dns', name: 'r9999.test' }, 'idle kinds forgotten and a new window: in full again');
});

t.test('createAudit + rotation: a kept history, every line whole, read back in order by the CLI readers', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const path = join(dir.path, 'logs', 'audit.jsonl');
  const audit = createAudit(path, (m) => t.fail(m), { rotation: { maxBytes: 64 * 1024, keep: 3 } });
  const N = 5000;
  for (let i = 0; i < N; i++) {
    audit.write({ event: 'reload', ok: true, rules: i, added: [`r${i}.example.com`], removed: [] });
    if (i % 100 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  await audit.close();
  for (const n of [1, 2, 3]) {
    const size = statSync(`${path}.${n}`).size;
    t.ok(size >= 64 * 1024 && size <= 64 * 1024 + 16 * 1024, `audit.jsonl.${n}: ${size} bytes, rotated at the size`);
  }
  const files = readdirSync(join(dir.path, 'logs')).sort();
  t.same(files, ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2', 'audit.jsonl.3'], 'the live file and 3 rotated ones, no more');
  t.same(await logFiles(path), [`${path}.3`, `${path}.2`, `${path}.1`, path], 'oldest first');
  const rules: number[] = [];
  for (const f of await logFiles(path)) {
    for await (const l of fileLines(f)) {
      const e = parseLine(l);
      if (!t.ok(e, 'a whole JSON line')) t.comment(l.slice(0, 200));
      rules.push(e!.rules as number);
    }
  }
  t.equal(rules.at(-1), N - 1, 'the last line written is the last read');
  t.ok(
    rules.every((r, i) => i === 0 || r === rules[i - 1]! + 1),
    'consecutive: nothing lost or repeated inside the kept history',
  );
  t.ok(rules.length < N && rules.length > 500, `older lines rotated away (${rules.length} kept)`);
});

t.test('readers: chunk boundaries, partial and overlong lines; Tail follows rotations', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const path = join(dir.path, 'audit.jsonl');
  const long = JSON.stringify({ event: 'x', pad: 'y'.repeat(700_000) });
  writeFileSync(path, `${long}\n{"a":1}\n${'z'.repeat(MAX_LINE + 10)}\n{"a":2}\n{"partial":`);
  const got: string[] = [];
  for await (const l of fileLines(path)) got.push(l.length > 100 ? `long:${l.length}` : l);
  t.same(
    got,
    [`long:${long.length}`, '{"a":1}', '{"a":2}'],
    'a line across chunks is whole; an overlong one skipped; a partial last one left',
  );

  const tail = await Tail.atEnd(path);
  t.teardown(() => tail.close());
  const poll = async () => {
    const out: string[] = [];
    for await (const l of tail.poll()) out.push(l);
    return out;
  };
  t.same(await poll(), [], 'atEnd: nothing of what was there');
  appendFileSync(path, '"x"}\n{"b":1}\n');
  t.same(await poll(), ['{"b":1}'], 'the partial line it started inside is not read; new lines are');
  appendFileSync(path, '{"b":2}\n');
  renameSync(path, `${path}.1`);
  appendFileSync(`${path}.1`, '{"b":3}\n');
  writeFileSync(path, '{"c":1}\n');
  t.same(await poll(), ['{"b":2}', '{"b":3}', '{"c":1}'], 'the rotated file is finished, then the new one read');
  // Two rotations between polls: the file in between is read too.
  appendFileSync(path, '{"c":2}\n');
  renameSync(`${path}.1`, `${path}.2`);
  renameSync(path, `${path}.1`);
  writeFileSync(path, '{"d":1}\n');
  renameSync(`${path}.2`, `${path}.3`);
  renameSync(`${path}.1`, `${path}.2`);
  renameSync(path, `${path}.1`);
  writeFileSync(path, '{"e":1}\n');
  t.same(await poll(), ['{"c":2}', '{"d":1}', '{"e":1}']);
  writeFileSync(path, 'f\n');
  t.same(await poll(), ['f'], 'truncated in place: read from the start');
});

t.test('counts: a summary adds its count to the event it summarises, across rotated files', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const path = join(dir.path, 'audit.jsonl');
  const deny = JSON.stringify({ event: 'dns', decision: 'deny', name: 'a' });
  writeFileSync(`${path}.1`, `${deny}\n${JSON.stringify({ event: 'repeat', of: 'dns', decision: 'deny', count: 41 })}\n`);
  writeFileSync(
    path,
    `${JSON.stringify({ event: 'suppressed', of: 'dns', decision: 'deny', count: 58 })}\n${JSON.stringify({ event: 'connect', decision: 'allow' })}\ngarbage\n`,
  );
  t.same(await scanLog(path), { decisions: { dns: { deny: 100 }, connect: { allow: 1 } }, startedAt: null });
  t.same(countDecisions([deny, deny]), { dns: { deny: 2 } });
  t.ok(matches({ event: 'repeat', decision: 'deny' }, { denied: true }), 'summaries are shown by --denied');
});

t.test('scanLog: counts and the last start in one pass over each file; logEvents: pre-filter and --since', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const path = join(dir.path, 'audit.jsonl');
  const at = (s: number) => `2026-01-01T12:00:0${s}.000Z`;
  const line = (o: Line) => `${JSON.stringify({ v: 1, ...o })}\n`;
  writeFileSync(
    `${path}.2`,
    line({ time: at(1), event: 'start', dns: 'x', proxy: 'y' }) + line({ time: at(2), event: 'dns', decision: 'deny', name: 'a.test' }),
  );
  writeFileSync(
    `${path}.1`,
    line({ time: at(3), event: 'start', dns: 'x', proxy: 'y' }) + line({ time: at(4), event: 'dns', decision: 'allow', name: 'b.test' }),
  );
  writeFileSync(
    path,
    line({ time: at(5), event: 'connect', decision: 'deny', host: 'c.test', port: 443 }) + '{"event":"start","time":9}\n',
  );
  const real = await import('node:fs/promises');
  const opened: string[] = [];
  const { scanLog: counted } = await t.mockImport<typeof import('../cli/auditlog.js')>('../cli/auditlog.js', {
    'node:fs/promises': { ...real, open: (p: string, flags: string) => (opened.push(p), real.open(p, flags)) },
  });
  t.same(
    await counted(path),
    {
      decisions: { dns: { deny: 1, allow: 1 }, connect: { deny: 1 } },
      startedAt: at(3),
    },
    'the last start with a time (a damaged one is not a start time)',
  );
  t.same(opened, [`${path}.2`, `${path}.1`, path], 'each file read once, oldest first');
  const names = async (o: Parameters<typeof logEvents>[1]) => {
    const out: unknown[] = [];
    for await (const e of logEvents(path, o)) out.push(e.name ?? e.host ?? e.event);
    return out;
  };
  t.same(await names({}), ['start', 'a.test', 'start', 'b.test', 'c.test', 'start']);
  t.same(await names({ has: '"deny"' }), ['a.test', 'c.test']);
  t.same(await names({ sinceMs: Date.parse(at(3)) }), ['start', 'b.test', 'c.test'], 'a line without a time is not "since"');
});

// Every hidden character a query name or host could carry: C0 (ESC, CR, BS, NUL, TAB, LF), DEL, C1 (the 8-bit
// CSI, NEL), line/paragraph separators, bidi embeddings/overrides/isolates and marks, zero-width, BOM, tags.
const HOSTILE = [
  '\x1b[2K\r\x1b[32mALLOW connect evil.test',
  'a\bb\x00c\td\ne\x7ff',
  '\x9b2K\x85x\x90\x9f',
  'x\u2028y\u2029z',
  '\u202aa\u202bb\u202cc\u202dd\u202ee\u2066f\u2067g\u2068h\u2069i',
  '\u200e\u200f\u061c\u200b\u200d\ufeff\u00ad\u{e0041}',
  '\ud800lone',
];

t.test('printable: every hidden character escaped, visible text unchanged, escapes cannot be faked', async (t) => {
  // (messages name the case by its index: a raw U+2028 in a message would break the TAP stream itself)
  HOSTILE.forEach((s, i) => t.notMatch(printable(s), HIDDEN, `hostile string ${i}`));
  t.equal(printable('\x1b[2K\rok'), '\\x1B[2K\\x0Dok');
  t.equal(printable('a\u202eb'), 'a\\u{202E}b');
  t.equal(printable('\u{e0041}'), '\\u{E0041}');
  t.equal(printable('münchen.例え.test ok-1'), 'münchen.例え.test ok-1', 'visible non-ASCII stays');
  t.equal(printable('a\\x1Bb'), 'a\\\\x1Bb', 'a literal backslash is doubled: the text "\\x1B" is not an ESC');
  for (const s of HOSTILE) {
    const line = JSON.stringify({ v: 1, event: 'dns', name: s, note: [s, { [s]: s }] });
    const safe = printableJson(line);
    t.notMatch(safe, HIDDEN, 'no hidden character in --json output');
    t.same(JSON.parse(safe), JSON.parse(line), '--json stays valid JSON with the same value');
  }
});

t.test('formatLine: no field of any event can carry a hidden character to the terminal', async (t) => {
  for (const [i, s] of HOSTILE.entries()) {
    const events: Line[] = [
      {
        time: s,
        event: 'dns',
        client: s,
        name: s,
        qtype: s,
        decision: 'deny',
        reason: s,
        rcode: s,
        answers: [s],
        rule: { text: s, source: s },
      },
      { event: 'connect', client: s, host: s, port: s, ip: s, method: s, decision: s, reason: s, status: s },
      { event: 'http', host: s, port: 80, method: s, decision: 'allow', detail: s },
      { event: 'tunnel_close', host: s, port: 1, bytes_up: s, bytes_down: 1, ms: 1, closed_by: s },
      { event: 'reload', ok: false, rules: 1, added: [s], removed: [s], errors: [s] },
      { event: 'repeat', of: 'dns', name: s, qtype: s, rcode: s, decision: 'deny', count: 3, first: s, last: s, client: s },
      { event: 'suppressed', of: s, client: s, decision: 'deny', count: 9, sample: [s, s], first: s, last: s },
      { event: s, [s]: s, nested: { [s]: [s] } },
    ];
    for (const e of events) {
      for (const colour of [false, true]) {
        const out = formatLine(e, colour);
        // With colour, the only ESCs are our own SGR sequences.
        const stripped = colour ? out.replace(/\x1b\[(?:0|2|31|32|33)m/g, '') : out;
        t.notMatch(stripped, HIDDEN, `hostile string ${i} in ${printable(String(e.event)).slice(0, 30)}, colour=${colour}`);
      }
    }
  }
  t.equal(
    formatLine(
      {
        time: '2026-01-01T12:00:01.000Z',
        event: 'repeat',
        of: 'dns',
        client: '10.0.0.3',
        name: 'x.test',
        qtype: 'A',
        rcode: 'NXDOMAIN',
        decision: 'deny',
        reason: 'not-allowlisted',
        count: 7,
        first: 'F',
        last: 'L',
      },
      false,
    ),
    '2026-01-01 12:00:01Z DENY  repeat   7 more × dns x.test A → NXDOMAIN F … L not-allowlisted client 10.0.0.3',
  );
});

/** Run the CLI in this process with a state directory of the test's own, capturing its output. */
const cli = cliInProcess;

/** A project directory and its state directory (log directory made) of the test's own; `run` runs the CLI on them. */
const projectWithLog = (t: { teardown(fn: () => unknown): void }) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const work = join(dir.path, 'project');
  mkdirSync(work);
  const state = join(dir.path, 'state');
  const paths = statePaths(projectFor(work), { CODEX_EGRESS_STATE_DIR: state });
  mkdirSync(paths.logDir, { recursive: true });
  return { paths, run: (argv: string[]) => cli([...argv, '--workdir', work], state) };
};

t.test('logs reads the rotated history oldest first, filters, escapes, and --json stays JSON', async (t) => {
  const { paths, run } = projectWithLog(t);
  const line = (i: number, name: string, decision = 'deny') =>
    JSON.stringify({
      v: 1,
      time: `2026-01-01T12:00:0${i}.000Z`,
      event: 'dns',
      client: '10.0.0.3',
      name,
      qtype: 'A',
      decision,
      reason: 'x',
      rcode: 'NXDOMAIN',
      answers: [],
    });
  writeFileSync(`${paths.auditLog}.2`, `${line(1, 'one.test')}\n`);
  writeFileSync(`${paths.auditLog}.1`, `${line(2, 'two.test', 'allow')}\n${line(3, '\x1b[2K\r\x1b[32mALLOW\u202e.test')}\n`);
  writeFileSync(paths.auditLog, `${line(4, 'four.test')}\n`);
  const all = await run(['logs']);
  t.equal(all.code, 0, all.stderr);
  t.same(
    all.stdout
      .trim()
      .split('\n')
      .map((l) => /dns +(\S+)/.exec(l)?.[1]),
    ['one.test', 'two.test', '\\x1B[2K\\x0D\\x1B[32mALLOW\\u{202E}.test', 'four.test'],
  );
  t.notMatch(all.stdout, HIDDEN_EXCEPT_LF);
  const denied = await run(['logs', '--denied', '--json']);
  const lines = denied.stdout.trim().split('\n');
  t.equal(lines.length, 3);
  t.notMatch(denied.stdout, HIDDEN_EXCEPT_LF);
  t.equal((JSON.parse(lines[1]!) as Line).name, '\x1b[2K\r\x1b[32mALLOW\u202e.test', 'the JSON value is the name as logged');
  const status = await run(['status', '--json']);
  t.match(JSON.parse(status.stdout), { decisions: { dns: { deny: 3, allow: 1 } } }, 'status counts every rotated file');
});

t.test('damaged and older lines: a field of the wrong JSON type is dropped, unknown fields kept, no reader crashes', async (t) => {
  const damaged = [
    '{"v":1,"time":7,"event":"dns","client":["x"],"name":{"a":1},"qtype":"A","decision":"deny","reason":5,"rcode":null,"answers":"1.2.3.4","rule":3}',
    '{"v":"one","time":"2026-01-01T12:00:01.000Z","event":"connect","host":"a.test","port":"443","decision":"deny","reason":"not-allowlisted","extra":{"y":1}}',
    '{"time":"2026-01-01T12:00:02.000Z","event":"repeat","of":7,"count":"9","decision":"deny","sample":"s"}',
    '{"event":"suppressed","of":"dns","decision":"deny","count":2,"sample":[1,null],"client":"10.0.0.3"}',
    '{"event":["x"],"decision":{"d":1}}',
    '{"event":"tunnel_close","host":5,"port":{},"bytes_up":"many","bytes_down":-1}',
    '{}',
    '{broken',
    '[1,2]',
    'null',
  ];
  const first = parseLine(damaged[0]!)!;
  t.same(first, { v: 1, event: 'dns', qtype: 'A', decision: 'deny' }, 'every field of the wrong type is dropped');
  t.same(parseLine(damaged[1]!), {
    time: '2026-01-01T12:00:01.000Z',
    event: 'connect',
    host: 'a.test',
    decision: 'deny',
    reason: 'not-allowlisted',
    extra: { y: 1 },
  });
  t.equal(parseLine('{broken'), undefined);
  t.equal(parseLine('[1,2]'), undefined);
  t.equal(parseLine('null'), undefined);
  for (const l of damaged) {
    const e = parseLine(l);
    if (!e) continue;
    t.type(formatLine(e, true), 'string', l);
    t.type(matches(e, { denied: true, sinceMs: 0 }), 'boolean', l);
  }
  t.same(
    countDecisions(damaged),
    { dns: { deny: 3 }, connect: { deny: 1 }, repeat: { deny: 1 } },
    'a summary without its event counts as itself',
  );
  // Every command that reads the log, over a log of damaged lines: an answer, never a crash.
  const { paths, run } = projectWithLog(t);
  writeFileSync(paths.auditLog, `${damaged.join('\n')}\n`);
  for (const argv of [['logs'], ['logs', '--denied', '--since', '1d'], ['logs', 'summary'], ['suggest']]) {
    const r = await run(argv);
    t.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  }
  const status = await run(['status', '--json']);
  t.equal(status.code, 4, 'status: not running (no gateway here), and no crash');
  t.match(JSON.parse(status.stdout), { decisions: { dns: { deny: 3 } } });
});
