// ATTACK18 (an attack session on what the operator sees), finding 1 (medium), fixed: a DNS name is read
// byte for byte, and `codex-egress logs` escaped only hidden characters, so a name (or a Host header in a
// line's detail) padded with spaces to the terminal's width, followed by the text of an audit line, laid
// out as a second, forged line on an 80-column terminal:
//   2026-12-07 09:30:00Z DENY  dns      telemetry-upload-service-eu.
//   2026-12-07 09:30:01Z ALLOW connect  github.com:443 (140.82.112.3) 200 allowed
// Now a name, host or method is printed as one token (its spaces escaped, cli/printable.ts), and the
// gateway quotes what the sandbox sent inside a detail with its spaces escaped (proxy/quoted.ts).
import t from 'tap';
import { execa } from 'execa';
import dgram from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startInproc, proxyRequest, type Inproc } from './harness/inproc.js';
import { CLI, tempDir } from './harness/world.js';
import { projectFor } from '../image/names.js';
import { statePaths } from '../image/project.js';
import { auditLine } from '../proxy/audit.js';
import type { AuditEvent } from '../proxy/audit.js';

const W = 80;
const PREFIX = '2026-12-07 09:30:00Z DENY  dns      '; // what formatLine puts before the name (NO_COLOR)
const FAKE = '2026-12-07 09:30:01Z ALLOW connect  github.com:443 (140.82.112.3) 200 allowed';

/** The labels of a name that, after PREFIX, wraps at W columns into FAKE on a row of its own. */
function labels(): string[] {
  const first = 'telemetry-upload-service-eu';
  const pad = W - (PREFIX.length + first.length + 1); // the rest of row 1, after "first."
  const name = `${first}.${' '.repeat(pad)}${FAKE}${' '.repeat(W - FAKE.length)}`;
  const ls = name.split('.');
  for (const l of ls) if (l.length > 63 || l.length === 0) throw new Error(`label ${JSON.stringify(l)} does not fit`);
  return ls;
}

function query(ls: string[]): Buffer {
  const header = Buffer.from([0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const parts = ls.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]);
  return Buffer.concat([header, ...parts, Buffer.from([0, 0, 1, 0, 1])]);
}

let g: Inproc;
const tmp = tempDir('codex-egress-attack18-');
t.before(async () => {
  g = await startInproc({ zone: { 'allowed.test': { a: ['127.0.0.1'] } }, rules: (p) => ['allowed.test', `allowed.test:${p}`] });
});
t.teardown(async () => {
  await g?.close();
  tmp.remove();
});

async function logsOf(lines: string, dir: string): Promise<string[]> {
  const project = join(tmp.path, dir);
  mkdirSync(project, { recursive: true });
  const env = { CODEX_EGRESS_STATE_DIR: join(tmp.path, `state-${dir}`), CODEX_EGRESS_DOCKER: join(tmp.path, 'no-docker'), NO_COLOR: '1' };
  const paths = statePaths(projectFor(project), env);
  mkdirSync(paths.logDir, { recursive: true });
  writeFileSync(paths.auditLog, lines);
  const r = await execa(process.execPath, [CLI, 'logs'], { reject: false, cwd: project, timeout: 60_000, env });
  return r.stdout.split('\n').filter(Boolean);
}
const rowsOf = (line: string) => {
  const rows: string[] = [];
  for (let i = 0; i < line.length; i += W) rows.push(line.slice(i, i + W).trimEnd());
  return rows;
};
const FORGED = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ALLOW /;

t.test('the same through a Host header (the host-mismatch detail)', async (t) => {
  const port = g.origin.port;
  // First learn where the detail starts on the printed line, then pad to the next row.
  const probe = async (host: string) => {
    const before = g.audit.events.length;
    const r = await proxyRequest(g.proxy.address.port, `GET http://allowed.test:${port}/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    r.socket.destroy();
    return g.audit.waitFor((x) => g.audit.events.indexOf(x) >= before && x.event === 'http' && x.decision === 'deny');
  };
  const e1 = await probe('MARK');
  const l1 = (await logsOf(auditLine(e1, Date.parse('2026-12-07T09:30:00.000Z')), 'h1'))[0]!;
  const at = l1.indexOf('MARK');
  // (Node trims a header value's trailing spaces: the pad after the forged text ends in a dot.)
  const host = `cdn${' '.repeat(W - ((at + 3) % W))}${FAKE}${' '.repeat(W - FAKE.length - 1)}.`;
  const e2 = await probe(host);
  t.match(
    e2,
    { reason: 'host-mismatch', detail: /^Host: "cdn(\\u0020)+2026-12-07\\u0020/ },
    'the gateway quoted the Host header, its spaces escaped',
  );
  const lines = await logsOf(auditLine(e2, Date.parse('2026-12-07T09:30:00.000Z')), 'h2');
  t.equal(lines.length, 1);
  const rows = rowsOf(lines[0]!);
  t.comment(rows.map((r) => `| ${r}`).join('\n'));
  t.notOk(
    rows.some((row) => FORGED.test(row)),
    'a refused request does not show as a separate ALLOW line',
  );
});

t.test('a DNS name with spaces does not show as a line of its own on an 80-column terminal', async (t) => {
  const ls = labels();
  const sock = dgram.createSocket('udp4');
  const answered = new Promise<void>((res) => sock.once('message', () => res()));
  sock.send(query(ls), g.dns.udp.port, '127.0.0.1');
  await Promise.race([answered, new Promise((r) => setTimeout(r, 3000))]);
  sock.close();
  const e = (await g.audit.waitFor((x) => x.event === 'dns')) as Extract<AuditEvent, { event: 'dns' }>;
  t.equal(e.decision, 'deny');
  t.equal(e.name, ls.join('.'), 'the gateway writes the name as asked, spaces and all');

  // The line exactly as the gateway writes it, read by `codex-egress logs`.
  const project = join(tmp.path, 'project');
  mkdirSync(project, { recursive: true });
  const env = { CODEX_EGRESS_STATE_DIR: join(tmp.path, 'state'), CODEX_EGRESS_DOCKER: join(tmp.path, 'no-docker'), NO_COLOR: '1' };
  const paths = statePaths(projectFor(project), env);
  mkdirSync(paths.logDir, { recursive: true });
  writeFileSync(paths.auditLog, auditLine(e, Date.parse('2026-12-07T09:30:00.000Z')));
  const r = await execa(process.execPath, [CLI, 'logs', '--denied'], { reject: false, cwd: project, timeout: 60_000, env });
  t.equal(r.exitCode, 0);
  const lines = r.stdout.split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'one audit line printed');
  // What an 80-column terminal shows: the line wrapped every W characters (all single-width here).
  const rows: string[] = [];
  for (let i = 0; i < lines[0]!.length; i += W) rows.push(lines[0]!.slice(i, i + W).trimEnd());
  t.comment(rows.map((r) => `| ${r}`).join('\n'));
  t.notOk(
    rows.some((row) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ALLOW /.test(row)),
    'a denial of one name does not show as a separate ALLOW line',
  );
});
