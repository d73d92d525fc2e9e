// The audit line as written: the same bytes pino's logger wrote (field order, escaping, `level`,
// `time`, `v`) for every kind of event; strings a sandbox chose (lone surrogates, controls, quotes)
// stay valid JSON that reads back to the same value; lines are written together (one write for many),
// reach the file within AUDIT_FLUSH_MS without a close, and a close writes everything.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { AUDIT_FLUSH_MS, AUDIT_SCHEMA_VERSION, auditLine, createAudit, isoTime, type AuditEvent } from '../proxy/audit.js';
import { tempDir } from './harness/world.js';

/** The logger the audit log used before (pino's own serialiser), writing to memory. */
function pinoLines(events: AuditEvent[], time: string): string[] {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out.push(String(chunk));
      cb();
    },
  });
  const logger = pino(
    { base: { v: AUDIT_SCHEMA_VERSION }, timestamp: () => `,"time":"${time}"`, formatters: { level: (label) => ({ level: label }) } },
    sink,
  );
  for (const e of events) {
    if (e.event === 'reload' && !e.ok) logger.error(e);
    else logger.info(e);
  }
  return out;
}

const EVENTS: AuditEvent[] = [
  {
    event: 'dns',
    client: '10.0.0.3',
    name: 'api.openai.com',
    qtype: 'A',
    decision: 'allow',
    reason: 'allowed',
    rcode: 'NOERROR',
    answers: ['203.0.113.5'],
    ms: 1.25,
    rule: { text: '.openai.com', source: 'default', origin: 'defaults' },
  },
  {
    event: 'connect',
    client: '10.0.0.3',
    host: 'github.com',
    port: 443,
    ip: '203.0.113.7',
    decision: 'allow',
    reason: 'allowed',
    status: 200,
  },
  {
    event: 'connect',
    client: '10.0.0.3',
    host: 'x"\\\u0000\u001f\u007f\u2028',
    port: 0,
    decision: 'deny',
    reason: 'bad-request',
    status: 400,
    detail: 'quote " backslash \\ tab \t',
  },
  {
    event: 'http',
    client: '10.0.0.3',
    host: 'example.org',
    port: 80,
    method: 'GET',
    decision: 'error',
    reason: 'upstream-error',
    status: 502,
    detail: undefined,
    mode: 'transparent',
  },
  {
    event: 'tunnel_close',
    client: '10.0.0.3',
    host: 'github.com',
    port: 443,
    ip: '203.0.113.7',
    bytes_up: 1,
    bytes_down: 2 ** 40,
    ms: 0,
    closed_by: 'client',
  },
  { event: 'reload', ok: false, rules: 3, added: [], removed: ['a.example'], errors: ['line 2: bad rule'] },
  { event: 'reload', ok: true, rules: 3, added: ['b.example'], removed: [] },
  { event: 'start', dns: '10.0.0.2:53', proxy: '10.0.0.2:3128', firewall: true, rules: 9, upstreams: ['192.0.2.53'] },
  { event: 'stop' },
  {
    event: 'firewall',
    action: 'drop',
    rule: 'deny-rest',
    family: 'ipv4',
    chain: 'FORWARD',
    target: 'DROP',
    packets: 3,
    bytes: 180,
    total_packets: 9,
  },
];

t.test('every event: byte for byte the line pino wrote', async (t) => {
  const time = '2026-12-06T12:00:00.123Z';
  const expected = pinoLines(EVENTS, time);
  EVENTS.forEach((e, i) => t.equal(auditLine(e, Date.parse(time)), expected[i], `${e.event} line ${i}`));
});

t.test('isoTime: Date#toISOString for every millisecond of a second, across seconds, days, years and odd years', async (t) => {
  const bases = [
    Date.parse('2026-12-06T12:00:00Z'),
    Date.parse('2026-12-31T23:59:59.990Z'),
    0,
    Date.parse('1999-12-31T23:59:59Z'),
    Date.now(),
  ];
  let wrong = 0;
  for (const b of bases) for (let ms = b - 1500; ms < b + 1500; ms++) if (isoTime(ms) !== new Date(ms).toISOString()) wrong++;
  for (const odd of [Date.parse('+010000-01-01T00:00:00.007Z'), -1, -1001, Date.parse('-000001-06-01T00:00:00.123Z')])
    if (isoTime(odd) !== new Date(odd).toISOString()) wrong++;
  t.equal(wrong, 0, 'every time formatted as toISOString formats it');
});

t.test('strings a sandbox chose stay valid JSON and read back whole (lone surrogates included)', async (t) => {
  const nasty = ['\ud800', 'a\udfffb', '\u0000\u001b[31m', '"}\n{"event":"forged"', '\u{1F600}'];
  for (const host of nasty) {
    const line = auditLine({
      event: 'connect',
      client: '10.0.0.3',
      host,
      port: 443,
      decision: 'deny',
      reason: 'not-allowlisted',
      status: 403,
    });
    t.equal(line.indexOf('\n'), line.length - 1, `one line: ${JSON.stringify(host)}`);
    t.equal(Buffer.from(line, 'utf8').toString('utf8'), line, 'well-formed UTF-8 (nothing replaced on the way to the file)');
    t.equal(JSON.parse(line).host, host, 'the same string read back');
  }
});

t.test('lines are written together, reach the file within the flush window, and close writes the rest', async (t) => {
  const dir = tempDir();
  t.teardown(dir.remove);
  const path = join(dir.path, 'audit.jsonl');
  const read = () => (existsSync(path) ? readFileSync(path, 'utf8') : '');
  const audit = createAudit(path, (m) => t.fail(m));
  const start = (i: number): AuditEvent => ({
    event: 'connect',
    client: '10.0.0.3',
    host: `h${i}.example`,
    port: 443,
    ip: '203.0.113.7',
    decision: 'allow',
    reason: 'allowed',
    status: 200,
  });
  for (let i = 0; i < 5; i++) audit.write(start(i));
  t.equal(read(), '', 'nothing written at once: the lines wait to be written together');
  const deadline = Date.now() + 5000; // the timer fires every AUDIT_FLUSH_MS; a loaded CI machine may be slow to write
  while (read().split('\n').length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(read().split('\n').length, 6, `the five lines reach the file without a close (written every ${AUDIT_FLUSH_MS} ms)`);
  for (let i = 5; i < 2000; i++) audit.write(start(i));
  audit.write({ event: 'stop' });
  await audit.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.equal(lines.length, 2001, 'close wrote every line');
  t.same(JSON.parse(lines.at(-1)!).event, 'stop', 'in order, the stop line last');
});
