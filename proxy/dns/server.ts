// The DNS server the sandbox uses (dns2, UDP and TCP). Denied names are answered here and never forwarded.
import { createTCPServer, createUDPServer } from 'dns2';
import type { AddressInfo } from 'node:net';
import type { Allowlist } from '../policy/allowlist.js';
import type { Audit, AuditEvent } from '../audit.js';
import type { Resolver } from './resolver.js';
import { buildResponse, RCODE, rcodeName, TYPE, typeName, type Packet } from './wire.js';

export interface DnsServerOptions {
  allowlist: () => Allowlist;
  resolver: Resolver;
  audit: Audit;
  /** Concurrent TCP connections at most. */
  maxTcpConnections?: number;
}

type DnsAudit = Extract<AuditEvent, { event: 'dns' }>;

/** Decide and answer one query. Returns undefined when nothing should be sent (a response packet). */
export async function answerQuery(
  req: Packet,
  client: string,
  opts: Pick<DnsServerOptions, 'allowlist' | 'resolver' | 'audit'>,
): Promise<Packet | undefined> {
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
  const r = await opts.resolver.lookup(d.host!);
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

/** Listen on UDP and TCP at host:port. Malformed packets are dropped; nothing a client sends can crash it. */
export async function startDnsServer(host: string, port: number, opts: DnsServerOptions): Promise<DnsServer> {
  const udp = createUDPServer();
  const tcp = createTCPServer();
  tcp.maxConnections = opts.maxTcpConnections ?? 256;
  const handle =
    (clientOf: (c: unknown) => string) =>
    (req: Packet, send: (p: Packet) => unknown, c: unknown): void => {
      answerQuery(req, clientOf(c), opts).then(
        (res) => {
          if (res) Promise.resolve(send(res)).catch(() => undefined);
        },
        (err: Error) => process.stderr.write(`codex-egress: dns: ${err.stack ?? err.message}\n`),
      );
    };
  udp.on('request', handle((c) => `${(c as { address: string }).address}`));
  tcp.on('request', handle((c) => `${(c as { remoteAddress?: string }).remoteAddress ?? ''}`));
  // Garbage, truncated or hostile packets surface here: drop them.
  udp.on('requestError', () => undefined);
  tcp.on('requestError', () => undefined);
  tcp.on('connection', (s) => s.on('error', () => undefined));
  await Promise.all([listenOn(udp, () => udp.bind(port, host)), listenOn(tcp, () => tcp.listen(port, host))]);
  return {
    udp: udp.address(),
    tcp: tcp.address() as AddressInfo,
    close: async () => {
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => {
          tcp.close(() => r());
        }),
      ]);
    },
  };
}

function listenOn(server: NodeJS.EventEmitter, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.removeListener('error', reject);
      server.on('error', (err: Error) => process.stderr.write(`codex-egress: dns: ${err.message}\n`));
      resolve();
    });
    start();
  });
}
