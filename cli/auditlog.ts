// Reading the gateway's audit log (one JSON line per decision) for `logs`, `status` and `allow`/`deny`.
// The log rotates (audit.jsonl, then audit.jsonl.1 … .N, .1 the newest: proxy/audit-file.ts) and can be
// large: every reader streams it in chunks (memory bounded by a chunk and the longest line), or tails it
// from its current end. Nothing here reads a file whole. Pure but for the file reads.
import { constants } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { noSpaces, printableDeep } from './printable.js';
import { parseLine, type AuditLine } from './audit-line.js';

/** --since: a duration (90s, 10m, 2h, 1d) before now, or an ISO time. Returns epoch ms or throws. */
export function parseSince(value: string, now = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(value);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new Error(`--since must be a duration like 10m or 2h, or a time like 2026-01-31T12:00:00Z, not "${value}"`);
  return t;
}

export interface Filter {
  denied?: boolean;
  sinceMs?: number;
}

export function matches(e: AuditLine, f: Filter): boolean {
  if (f.denied && e.decision !== 'deny' && !(e.event === 'reload' && e.ok === false)) return false;
  if (f.sinceMs !== undefined && (!e.time || Date.parse(e.time) < f.sinceMs)) return false;
  return true;
}

const COLOURS = { red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', dim: '\x1b[2m', reset: '\x1b[0m' };

/** One human line per event; colour only when asked (a TTY). */
export function formatLine(raw: AuditLine, colour: boolean): string {
  // Every string the sandbox could have chosen (names, hosts, methods, details …) is escaped before it is
  // laid out, so no field can move the cursor, end the line or reorder it on the terminal.
  const printed = printableDeep(raw);
  // A value the sandbox chose as one name (a DNS name, a host, a method, the names of a flood) is shown as
  // one token, its spaces escaped: padded with spaces, it could show a line of its own (ATTACK18).
  const one = (v: unknown) => (typeof v === 'string' ? noSpaces(v) : v);
  const e = {
    ...printed,
    name: one(printed.name),
    host: one(printed.host),
    method: one(printed.method),
    ...(Array.isArray(printed.sample) ? { sample: printed.sample.map(one) } : {}),
    ...(Array.isArray(printed.answers) ? { answers: printed.answers.map(one) } : {}),
  } as typeof printed;
  const c = (k: keyof typeof COLOURS, s: string) => (colour ? `${COLOURS[k]}${s}${COLOURS.reset}` : s);
  const time = (e.time ?? '').replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const decision =
    e.decision === 'allow'
      ? c('green', 'ALLOW')
      : e.decision === 'deny'
        ? c('red', 'DENY ')
        : e.decision
          ? c('yellow', String(e.decision).toUpperCase().padEnd(5))
          : '     ';
  const rule = typeof e.rule === 'object' ? e.rule : undefined;
  let what: string;
  switch (e.event) {
    case 'dns':
      what = `dns      ${e.name} ${e.qtype} → ${e.rcode}${Array.isArray(e.answers) && e.answers.length ? ` ${e.answers.join(',')}` : ''}`;
      break;
    case 'connect':
    case 'http':
      what = `${String(e.event).padEnd(8)} ${e.method ? `${e.method} ` : ''}${e.host}:${e.port}${e.ip ? ` (${e.ip})` : ''}${e.status ? ` ${e.status}` : ''}`;
      break;
    case 'tunnel_close':
      what = `closed   ${e.host}:${e.port} up ${e.bytes_up} B down ${e.bytes_down} B ${e.ms} ms by ${e.closed_by}`;
      break;
    case 'repeat':
      what = `repeat   ${e.count} more ×${e.of === 'dns' ? ` dns ${e.name} ${e.qtype} → ${e.rcode}` : ` ${e.of} ${e.method ? `${e.method} ` : ''}${e.host}:${e.port}`} ${e.first} … ${e.last}`;
      break;
    case 'suppressed':
      what = `flood    ${e.count} more ${e.of} denials of other names${Array.isArray(e.sample) && e.sample.length ? ` (${e.sample.join(', ')}${Number(e.count) > e.sample.length ? ', …' : ''})` : ''} ${e.first} … ${e.last}`;
      break;
    case 'reload':
      what = `reload   ${e.ok ? 'ok' : 'REJECTED'} ${e.rules} rules${Array.isArray(e.added) && e.added.length ? ` +${e.added.join(' +')}` : ''}${Array.isArray(e.removed) && e.removed.length ? ` -${e.removed.join(' -')}` : ''}${Array.isArray(e.errors) ? ` ${e.errors.join('; ')}` : ''}`;
      break;
    default:
      what = `${String(e.event).padEnd(8)} ${JSON.stringify(Object.fromEntries(Object.entries(e).filter(([k]) => !['v', 'time', 'level', 'event'].includes(k))))}`;
  }
  const why = e.decision
    ? ` ${c('dim', `${e.reason ?? ''}${e.detail ? ` (${e.detail})` : ''}${rule ? ` [${rule.text} from ${rule.source}]` : ''}${e.client ? ` client ${e.client}` : ''}`)}`
    : '';
  return `${c('dim', time)} ${decision} ${what}${why}`;
}

/**
 * The log's files that exist, oldest first: audit.jsonl.N … audit.jsonl.1, then audit.jsonl. Read from
 * the directory, not probed one number after another: a rotation renames one file at a time, and a
 * number missing for that moment would end the list there (ATTACK19).
 */
export async function logFiles(path: string): Promise<string[]> {
  const base = basename(path);
  // Regular files only (a link, a pipe or a directory of that name is not the log's).
  const entries = (await readdir(dirname(path), { withFileTypes: true }).catch(() => [])).filter((d) => d.isFile()).map((d) => d.name);
  const numbers = entries
    .filter((f) => f.startsWith(`${base}.`) && /^[1-9][0-9]{0,3}$/.test(f.slice(base.length + 1)))
    .map((f) => Number(f.slice(base.length + 1)))
    .sort((a, b) => b - a);
  return [...numbers.map((n) => `${path}.${n}`), ...(entries.includes(base) ? [path] : [])];
}

/**
 * A file of the log opened for reading, or undefined: only a regular file, never through a link, and
 * without blocking (a named pipe or a directory put in the log's directory would otherwise hang or end
 * every reader; a link would print another file as log lines: ATTACK20).
 */
async function openRegular(path: string): Promise<FileHandle | undefined> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  if ((await fh.stat().catch(() => undefined))?.isFile()) return fh;
  await fh.close();
  return undefined;
}

const CHUNK = 256 * 1024;
/** A longer line is skipped (the gateway writes none this long; a line is never held whole beyond this). */
export const MAX_LINE = 16 * 1024 * 1024;

/**
 * The complete lines of an open file from `offset` to its current end, in chunks. `at.offset` is moved past
 * each line as it is yielded (a partial last line is left for the next read).
 */
export async function* linesOf(fh: FileHandle, at: { offset: number }): AsyncGenerator<string> {
  const buf = Buffer.alloc(CHUNK);
  let parts: Buffer[] = [];
  let partLen = 0;
  let skipping = false;
  let pos = at.offset;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
    if (bytesRead === 0) return;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl === -1 || nl >= bytesRead) break;
      const lineEnd = pos + nl + 1;
      if (skipping || partLen + (nl - start) > MAX_LINE) skipping = false;
      else {
        const line = partLen ? Buffer.concat([...parts, buf.subarray(start, nl)]).toString('utf8') : buf.toString('utf8', start, nl);
        at.offset = lineEnd;
        if (line) yield line;
      }
      at.offset = lineEnd;
      parts = [];
      partLen = 0;
      start = nl + 1;
    }
    if (start < bytesRead && !skipping) {
      partLen += bytesRead - start;
      if (partLen > MAX_LINE) {
        skipping = true;
        parts = [];
        partLen = 0;
      } else parts.push(Buffer.from(buf.subarray(start, bytesRead)));
    }
    pos += bytesRead;
  }
}

/** Every line of one file, streamed. */
export async function* fileLines(file: string): AsyncGenerator<string> {
  const fh = await openRegular(file);
  if (!fh) return;
  try {
    yield* linesOf(fh, { offset: 0 });
  } finally {
    await fh.close();
  }
}

interface OpenFile {
  fh: FileHandle;
  ino: number;
  mtimeMs: number;
}

/**
 * The log's files (the rotated ones, oldest first, then the live one if `live`), all opened before any
 * is read, as one consistent set: a rotation that renamed them while they were being opened opens them
 * again (a few times at most). Read from the handles, each is then read once and none is missed,
 * whatever is renamed meanwhile (ATTACK18: names listed once and opened one after another missed the
 * file a rotation moved up).
 */
async function openLog(path: string, live: boolean): Promise<OpenFile[]> {
  const list = async () => (await logFiles(path)).filter((f) => live || f !== path);
  for (let attempt = 1; ; attempt++) {
    const names = await list();
    const set: OpenFile[] = [];
    for (const f of names) {
      const fh = await openRegular(f);
      if (!fh) continue;
      const s = await fh.stat();
      set.push({ fh, ino: s.ino, mtimeMs: s.mtimeMs });
    }
    const now = await Promise.all(
      names.map((f) =>
        stat(f).then(
          (s) => s.ino,
          () => undefined,
        ),
      ),
    );
    // Consistent: the same names listed again, each still the file opened under it.
    const again = await list();
    const same = again.length === names.length && again.every((f, i) => f === names[i]);
    if (attempt === 5 || (same && set.length === names.length && set.every((o, i) => o.ino === now[i]))) return set;
    await Promise.all(set.map((o) => o.fh.close()));
  }
}

/**
 * Every line of the log, oldest first (`openLog`), streamed. `live`: the live file too; `skipIno`: a file
 * read elsewhere (the live file a `Tail` holds); `sinceMs`: files last written before then are skipped.
 */
export async function* logLines(path: string, o: { live: boolean; skipIno?: number; sinceMs?: number }): AsyncGenerator<string> {
  const set = await openLog(path, o.live);
  try {
    for (const f of set) {
      if (f.ino === o.skipIno) continue;
      if (o.sinceMs !== undefined && f.mtimeMs < o.sinceMs) continue; // nothing in it is recent enough
      yield* linesOf(f.fh, { offset: 0 });
    }
  } finally {
    await Promise.all(set.map((f) => f.fh.close()));
  }
}

/**
 * Follows the live log like `tail -F`: holds the file open, reads what was appended since the last poll,
 * and across a rotation finishes the renamed file (and any rotated after it) before opening the new one.
 */
export class Tail {
  private fh?: FileHandle;
  private ino?: number;
  private readonly at = { offset: 0 };
  private midLine = false;

  private constructor(private readonly path: string) {}

  /** Start at the current end of the log (only lines written from now on). */
  static async atEnd(path: string): Promise<Tail> {
    const t = new Tail(path);
    await t.openLive();
    if (t.fh) {
      t.at.offset = (await t.fh.stat()).size;
      // Inside a line still being written: its rest is not a line of its own.
      const last = Buffer.alloc(1);
      if (t.at.offset > 0 && (await t.fh.read(last, 0, 1, t.at.offset - 1)).bytesRead === 1 && last[0] !== 10) t.midLine = true;
    }
    return t;
  }

  /** Start at the beginning of the live file. */
  static async atStart(path: string): Promise<Tail> {
    const t = new Tail(path);
    await t.openLive();
    return t;
  }

  /** The inode being followed (to skip a rotated file that is the same one). */
  get inode(): number | undefined {
    return this.ino;
  }

  /** The lines written since the last poll. */
  async *poll(): AsyncGenerator<string> {
    if (!this.fh) {
      await this.openLive();
      if (!this.fh) return;
    }
    if ((await this.fh.stat()).size < this.at.offset) this.at.offset = 0; // truncated in place
    for await (const l of linesOf(this.fh, this.at)) {
      if (this.midLine) this.midLine = false;
      else yield l;
    }
    const now = await stat(this.path).catch(() => undefined);
    if (now && now.ino === this.ino) return;
    // Rotated: what we hold is now one of audit.jsonl.N; files rotated after it come before the new live one.
    const rotated = (await logFiles(this.path)).filter((f) => f !== this.path);
    const inodes = await Promise.all(rotated.map(async (f) => (await stat(f).catch(() => undefined))?.ino));
    const mine = inodes.indexOf(this.ino);
    // Lines may have reached the file we hold after our read and before it was renamed: read it to its
    // end once more (nothing is written to it after the rename), then move on.
    for await (const l of linesOf(this.fh, this.at)) {
      if (this.midLine) this.midLine = false;
      else yield l;
    }
    await this.fh.close();
    this.fh = undefined;
    if (mine !== -1) for (const f of rotated.slice(mine + 1)) yield* fileLines(f);
    await this.openLive();
    if (this.fh) yield* this.poll();
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }

  private async openLive(): Promise<void> {
    const fh = await openRegular(this.path);
    if (!fh) return;
    this.fh = fh;
    this.ino = (await fh.stat()).ino;
    this.at.offset = 0;
    this.midLine = false;
  }
}

/** Decisions counted by event and decision: { "connect": { "allow": 3, "deny": 1 }, … }. */
export type DecisionCounts = Record<string, Record<string, number>>;

/** Count one line (a `repeat` or `suppressed` summary adds its count to the event it summarises). */
export function countLine(counts: DecisionCounts, line: string): void {
  if (!line.includes('"decision":')) return;
  const e = parseLine(line);
  if (!e?.event || !e.decision) return;
  const of = e.event === 'repeat' || e.event === 'suppressed' ? e.of : undefined;
  const event = of ?? e.event;
  const n = of ? (e.count ?? 0) : 1;
  // Objects without a prototype: an event or decision named `__proto__` is just a key (ATTACK18).
  const byEvent = (counts[event] ??= Object.create(null) as Record<string, number>);
  byEvent[e.decision] = (byEvent[e.decision] ?? 0) + n;
}

const noCounts = (): DecisionCounts => Object.create(null) as DecisionCounts;

export function countDecisions(lines: Iterable<string>): DecisionCounts {
  const counts = noCounts();
  for (const l of lines) countLine(counts, l);
  return counts;
}

/**
 * The whole log (every rotated file included) in one streamed pass: the decisions counted, and the time
 * of the last `start` line (the gateway's current run), or null.
 */
export async function scanLog(path: string): Promise<{ decisions: DecisionCounts; startedAt: string | null }> {
  const decisions = noCounts();
  let startedAt: string | null = null;
  for await (const l of logLines(path, { live: true })) {
    countLine(decisions, l);
    if (!l.includes('"start"')) continue;
    const e = parseLine(l);
    if (e?.event === 'start' && e.time) startedAt = e.time;
  }
  return { decisions, startedAt };
}

/**
 * Every event of the log, oldest first (rotated files included), streamed. `has`: a line without this
 * text is skipped before it is parsed (a cheap pre-filter); `sinceMs`: only events from then on.
 */
export async function* logEvents(path: string, o: { has?: string; sinceMs?: number } = {}): AsyncGenerator<AuditLine> {
  for await (const l of logLines(path, { live: true })) {
    if (o.has && !l.includes(o.has)) continue;
    const e = parseLine(l);
    if (e && matches(e, { sinceMs: o.sinceMs })) yield e;
  }
}
