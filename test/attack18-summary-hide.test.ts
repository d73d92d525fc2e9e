// ATTACK18 (an attack session on what the operator sees), finding 2 (low), fixed: denied CONNECTs and
// plain-HTTP requests past a client's budget of new kinds are written as one `suppressed` line whose
// `sample` holds `host:port`; the CLI read each sample as a name, refused it (a colon), and those hosts
// were in neither `logs summary` nor `suggest`, whatever their count: a sandbox could burn its budget
// with made-up hosts and hide the host it really wanted. The port is now read apart (cli/suggest-rules.ts).
import t from 'tap';
import { Summariser as GatewaySummariser, type RepeatEvent, type SuppressedEvent } from '../proxy/audit-summary.js';
import type { AuditEvent } from '../proxy/audit.js';
import { parseLine } from '../cli/audit-line.js';
import { auditLine } from '../proxy/audit.js';
import { Summariser } from '../cli/logs-summary.js';
import { DeniedNames, propose } from '../cli/suggest-rules.js';

/** The lines the gateway writes for these events (its real summariser, the real line format). */
function gatewayLines(events: AuditEvent[]): string[] {
  const out: string[] = [];
  let now = Date.parse('2026-12-07T09:30:00Z');
  const s = new GatewaySummariser(
    (e: AuditEvent | RepeatEvent | SuppressedEvent) => out.push(auditLine(e, now)),
    undefined,
    () => now,
  );
  for (const e of events) {
    now += 1;
    s.write(e);
  }
  s.flush();
  return out.map((l) => l.trimEnd());
}

const connect = (host: string): AuditEvent => ({
  event: 'connect',
  client: '10.9.0.3',
  host,
  port: 443,
  decision: 'deny',
  reason: 'not-allowlisted',
  status: 403,
});

t.test('a CONNECT past the budget is in logs summary and suggest', async (t) => {
  const events = [...Array.from({ length: 100 }, (_, i) => connect(`junk${i}.noise.example`))];
  for (let i = 0; i < 50; i++) events.push(connect('exfil.attacker.example'));
  const lines = gatewayLines(events);
  const suppressed = lines.map(parseLine).find((e) => e?.event === 'suppressed');
  t.ok(suppressed, 'the gateway wrote a suppressed line');
  t.match(suppressed, { of: 'connect', count: 50, sample: ['exfil.attacker.example:443'] });

  const s = new Summariser();
  for (const l of lines) s.add(parseLine(l)!);
  const names = s.result(100_000).denied.map((d) => d.name);
  t.equal(names.length, 101, 'the 100 junk hosts are listed, and the one refused 50 times');
  t.ok(names.includes('exfil.attacker.example'), 'logs summary lists the host refused 50 times');

  const d = new DeniedNames();
  for (const l of lines) d.add(parseLine(l)!);
  t.ok(
    propose(d.asked.values()).some((p) => p.names.includes('exfil.attacker.example')),
    'suggest knows the host refused 50 times',
  );
});
