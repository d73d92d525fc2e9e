// The upstream DNS client: UDP with a timeout, TCP when the answer is truncated, failover between upstreams.
import dgram from 'node:dgram';
import net from 'node:net';
import { buildQuery, parseMessage, readAChain, RCODE, type Message } from './wire.js';

export interface Upstream {
  host: string;
  port: number;
}

export type UpstreamResult =
  | { rcode: typeof RCODE.NOERROR; ips: string[]; ttl: number; upstream: string }
  | { rcode: typeof RCODE.NXDOMAIN; ips: []; ttl: number; upstream: string };

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  readonly code = 'ERR_UPSTREAM_FAILED';
}

const MAX_TCP_MESSAGE = 65535;
const label = (u: Upstream) => `${u.host}:${u.port}`;

/** Parse an upstream reply; one claiming more records than an A answer can need is refused (wire.ts: MAX_RECORDS). */
const parseReply = (msg: Buffer): Message | undefined => parseMessage(msg);

/** Does this message answer our query (id, response bit, same question)? */
function answers(p: Message | undefined, id: number, name: string): p is Message {
  const q = p?.questions[0];
  return !!p && p.header.id === id && p.header.qr === 1 && !!q && q.name.toLowerCase() === name.toLowerCase() && q.type === 1;
}

function queryUdp(u: Upstream, name: string, timeoutMs: number): Promise<Message> {
  const { id, bytes } = buildQuery(name);
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const done = (err: Error | null, p?: Message) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new UpstreamError(`${label(u)}: no answer in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    // Only a reply from the upstream's own address and port, to our id and question, counts (anti-spoofing).
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== u.host || rinfo.port !== u.port) return;
      const p = parseReply(msg);
      if (answers(p, id, name)) done(null, p);
    });
    sock.send(bytes, u.port, u.host, (err) => err && done(err));
  });
}

function queryTcp(u: Upstream, name: string, timeoutMs: number): Promise<Message> {
  const { id, bytes } = buildQuery(name);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.host, port: u.port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, p?: Message) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new UpstreamError(`${label(u)} (tcp): no answer in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(bytes.length);
      sock.write(Buffer.concat([len, bytes]));
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_MESSAGE + 2) return done(new UpstreamError(`${label(u)} (tcp): oversized answer`));
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const p = parseReply(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      if (answers(p, id, name)) done(null, p);
      else done(new UpstreamError(`${label(u)} (tcp): answer does not match the query`));
    });
    sock.on('end', () => done(new UpstreamError(`${label(u)} (tcp): closed before answering`)));
  });
}

export interface UpstreamOptions {
  /** Per-attempt timeout (UDP, then TCP when truncated). */
  timeoutMs?: number;
}

/** What the resolver needs from upstream: A records for a name (UpstreamClient; a fake in the in-process tests). */
export interface UpstreamResolver {
  resolveA(name: string): Promise<UpstreamResult>;
}

/** Resolves A records through the configured upstream resolvers, in order, failing over on error. */
export class UpstreamClient implements UpstreamResolver {
  readonly timeoutMs: number;
  constructor(
    readonly upstreams: readonly Upstream[],
    opts: UpstreamOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
  }

  async resolveA(name: string): Promise<UpstreamResult> {
    const failures: string[] = [];
    for (const u of this.upstreams) {
      try {
        let p = await queryUdp(u, name, this.timeoutMs);
        if (p.header.tc) p = await queryTcp(u, name, this.timeoutMs);
        if (p.header.rcode === RCODE.NXDOMAIN) return { rcode: RCODE.NXDOMAIN, ips: [], ttl: 0, upstream: label(u) };
        if (p.header.rcode !== RCODE.NOERROR) {
          failures.push(`${label(u)}: rcode ${p.header.rcode}`);
          continue;
        }
        return { rcode: RCODE.NOERROR, ...readAChain(p, name), upstream: label(u) };
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    throw new UpstreamError(`all upstream resolvers failed: ${failures.join('; ') || 'none configured'}`);
  }
}
