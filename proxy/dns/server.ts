// The DNS server the sandbox uses (UDP and TCP). Denied names are answered here and never forwarded.
import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import type { Allowlist } from '../policy/allowlist.js';
import type { Audit, AuditEvent } from '../audit.js';
import { LiveList } from '../live-list.js';
import { serveTcp } from './tcp.js';
import type { Resolver } from './resolver.js';
import type { Assignment } from '../transparent/pool.js';
import type { Report } from '../report.js';
import { buildResponse, encode, parseQuery, RCODE, rcodeName, TYPE, typeName, type Message } from './wire.js';

export interface DnsServerOptions {
  allowlist: () => Allowlist;
  resolver: Resolver;
  audit: Audit;
  /** Errors the server survives (a failed answer, a socket error after listening). */
  report: Report;
  /** Concurrent TCP connections at most. */
  maxTcpConnections?: number;
  /** Transparent mode: the pool address that stands for an allowed name, answered instead of its addresses. */
  transparent?: (name: string, ttl: number) => Assignment;
}

type DnsAudit = Extract<AuditEvent, { event: 'dns' }>;

/** Decide and answer one query. Returns undefined when nothing should be sent (a response packet). */
export async function answerQuery(
  req: Message,
  client: string,
  opts: Pick<DnsServerOptions, 'allowlist' | 'resolver' | 'audit' | 'transparent'>,
): Promise<Message | undefined> {
  if (req.header.qr) return undefined; // a response sent to us: never answer (no reflection loops)
  const started = performance.now();
  const q = req.questions[0];
  const audit = (e: Omit<DnsAudit, 'event' | 'client' | 'name' | 'qtype' | 'ms'>) =>
    opts.audit.write({
      event: 'dns',
      client,
      name: q?.name ?? '',
      qtype: q ? typeName(q.type) : '',
      ms: Math.round((performance.now() - started) * 1000) / 1000,
      ...e,
    });
  const reply = (rcode: number, e: Omit<DnsAudit, 'event' | 'client' | 'name' | 'qtype' | 'ms' | 'rcode'>, ips: string[] = [], ttl = 0) => {
    audit({ ...e, rcode: rcodeName(rcode) });
    return buildResponse(req, rcode, ips, ttl);
  };
  if (req.header.opcode !== 0) return reply(RCODE.NOTIMP, { decision: 'deny', reason: 'bad-request', answers: [] });
  if (req.questions.length !== 1 || !q || typeof q.name !== 'string') {
    return reply(RCODE.FORMERR, { decision: 'deny', reason: 'bad-request', answers: [] });
  }
  if (q.class !== 1) return reply(RCODE.REFUSED, { decision: 'deny', reason: 'bad-request', answers: [] });
  const d = opts.allowlist().decide(q.name, 'dns');
  const rule = d.rule;
  if (!d.allow) return reply(RCODE.NXDOMAIN, { decision: 'deny', reason: d.reason, rule, answers: [] });
  // Only A is forwarded. AAAA, HTTPS/SVCB and every other type get an empty answer, so clients use IPv4.
  if (q.type !== TYPE.A) return reply(RCODE.NOERROR, { decision: 'allow', reason: 'allowed', rule, answers: [] });
  const r = await opts.resolver.lookup(d.host);
  // The decision was made before the lookup: a reload meanwhile may have removed the name.
  const now = opts.allowlist().decide(q.name, 'dns');
  if (!now.allow || r.status === 'revoked') {
    return reply(RCODE.NXDOMAIN, { decision: 'deny', reason: now.allow ? 'policy-reload' : now.reason, rule: now.rule, answers: [] });
  }
  if (r.status === 'ok' && opts.transparent) {
    // The name, not its addresses: the sandbox connects to the gateway's pool address for it.
    const p = opts.transparent(d.host, r.ttl);
    if (!p.ok) return reply(RCODE.SERVFAIL, { decision: 'deny', reason: 'pool-exhausted', rule, answers: [], resolved: r.ips });
    return reply(RCODE.NOERROR, { decision: 'allow', reason: 'allowed', rule, answers: [p.ip], resolved: r.ips }, [p.ip], r.ttl);
  }
  switch (r.status) {
    case 'ok':
      return reply(RCODE.NOERROR, { decision: 'allow', reason: 'allowed', rule, answers: r.ips }, r.ips, r.ttl);
    case 'nodata':
      return reply(RCODE.NOERROR, { decision: 'allow', reason: 'allowed', rule, answers: [] });
    case 'nxdomain':
      return reply(RCODE.NXDOMAIN, { decision: 'allow', reason: 'nxdomain', rule, answers: [] });
    case 'refused':
      return reply(RCODE.REFUSED, { decision: 'deny', reason: 'private-address', rule, answers: r.ips });
    case 'servfail':
      return reply(RCODE.SERVFAIL, { decision: 'deny', reason: r.reason, rule, answers: [] });
  }
}

export interface DnsServer {
  udp: AddressInfo;
  tcp: AddressInfo;
  close(): Promise<void>;
}

/**
 * Listen on UDP and TCP at host:port. Every message is screened on the wire before it is parsed
 * (a query has exactly one question and no records but an optional OPT), so a packet claiming 65535
 * records costs nothing; responses sent to us are dropped; nothing a client sends can crash the server.
 */
export async function startDnsServer(host: string, port: number, opts: DnsServerOptions): Promise<DnsServer> {
  const respond = async (msg: Buffer, client: string): Promise<Buffer | undefined> => {
    const screened = screenQuery(msg);
    if (screened !== 'ok') return screened === 'drop' ? undefined : screened;
    const req = parseQuery(msg);
    if (!req) return formErr(msg);
    const res = await answerQuery(req, client, opts);
    return res && encode(res);
  };
  const fail = (err: Error) => opts.report(`dns: ${err.stack ?? err.message}`);

  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    // Source port 0 cannot be answered (Node's send throws on it, which here would stop the gateway): dropped unread.
    if (rinfo.port === 0) return;
    respond(msg, rinfo.address).then((out) => {
      if (!out) return;
      // Our answers are small (A records of one name); a client without EDNS gets at most 512 bytes.
      // A send that cannot be made (the socket closed while this answer was pending) is dropped, never thrown.
      try {
        udp.send(out.length > 512 ? truncated(out) : out, rinfo.port, rinfo.address, () => undefined);
      } catch {
        /* dropped */
      }
    }, fail);
  });

  const sockets = new LiveList<net.Socket>();
  const tcp = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('close', sockets.add(s));
    serveTcp(s, MAX_QUERY_BYTES, (msg) => respond(msg, s.remoteAddress ?? ''), fail);
  });
  tcp.maxConnections = opts.maxTcpConnections ?? 256;

  await Promise.all([listenOn(udp, opts.report, () => udp.bind(port, host)), listenOn(tcp, opts.report, () => tcp.listen(port, host))]);
  return {
    udp: udp.address(),
    tcp: tcp.address() as AddressInfo,
    close: async () => {
      for (const s of sockets.values()) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}

const MAX_QUERY_BYTES = 4096;

/** Check a message's header before parsing: 'ok', 'drop' (never answer), or a ready FORMERR/NOTIMP reply. */
function screenQuery(msg: Buffer): 'ok' | 'drop' | Buffer {
  if (msg.length < 12) return 'drop';
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return 'drop'; // a response: answering would make a reflection loop
  if (msg.length > MAX_QUERY_BYTES) return formErr(msg);
  const [qd, an, ns, ar] = [4, 6, 8, 10].map((o) => msg.readUInt16BE(o));
  if (qd !== 1 || an !== 0 || ns !== 0 || ar! > 1) return formErr(msg);
  // A label holding a dot (`allowed\.test`, one label) would read as another name: the codec refuses it (FORMERR).
  return 'ok';
}

/** A header-only error reply to a message we will not parse (id and opcode copied, RD kept). */
function formErr(msg: Buffer, rcode: number = RCODE.FORMERR): Buffer {
  const out = Buffer.alloc(12);
  msg.copy(out, 0, 0, 2);
  const flags = msg.length >= 4 ? msg.readUInt16BE(2) : 0;
  out.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0080 | rcode, 2); // QR, opcode, RD; RA; rcode
  return out;
}

/** The header of an answer with TC set and every count zeroed: the client retries over TCP. */
function truncated(out: Buffer): Buffer {
  const t = Buffer.from(out.subarray(0, 12));
  t.writeUInt16BE(t.readUInt16BE(2) | 0x0200, 2);
  t.fill(0, 4, 12);
  return t;
}

function listenOn(server: NodeJS.EventEmitter, report: Report, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.removeListener('error', reject);
      server.on('error', (err: Error) => report(`dns: ${err.message}`));
      resolve();
    });
    start();
  });
}
