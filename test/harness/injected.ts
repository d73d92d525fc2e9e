// An in-process proxy that injects a credential for `api.test` (proxy/inject), in front of an HTTPS origin
// on 127.0.0.1 with a CA of its own, and a client for its injected tunnel.
import https from 'node:https';
import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from '../../proxy/config.js';
import { Resolver } from '../../proxy/dns/resolver.js';
import { startProxy, type ProxyServer } from '../../proxy/http/proxy.js';
import { ensureCa, LeafIssuer } from '../../proxy/inject/ca.js';
import { parseCredentials } from '../../proxy/inject/credentials.js';
import { mergeSources } from '../../proxy/policy/allowlist.js';
import { FakeUpstream, loopbackOrPublic, MemoryAudit } from './inproc.js';

export interface Injected {
  proxy: ProxyServer;
  /** The origin's port (the credential's, and the allowed rule's: `api.test:<port>`). */
  port: number;
  audit: MemoryAudit;
  reports: string[];
  /** A client through the injected tunnel: CONNECT, then TLS with the project CA. */
  open(): Promise<tls.TLSSocket>;
  close(): Promise<void>;
}

/** Start the origin (`handler`) and the proxy injecting `value` for `api.test` at it. */
export async function startInjected(value: string, handler: http.RequestListener): Promise<Injected> {
  const tmp = mkdtempSync(join(tmpdir(), 'injected-'));
  const up = ensureCa(join(tmp, 'upstream-ca'), 'upstream');
  const upIssuer = new LeafIssuer(readFileSync(up.cert, 'utf8'), readFileSync(up.key, 'utf8'));
  const origin = https.createServer({ SNICallback: (name, cb) => cb(null, upIssuer.contextFor(name.toLowerCase())) }, handler);
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const port = (origin.address() as net.AddressInfo).port;
  const ca = ensureCa(join(tmp, 'project-ca'), 'injected');
  const projectCa = readFileSync(ca.cert, 'utf8');
  const merged = mergeSources({ defaults: false, flags: [`api.test:${port}`] });
  if (!merged.ok) throw new Error(merged.errors.join('; '));
  const allowlist = merged.allowlist;
  const audit = new MemoryAudit();
  const reports: string[] = [];
  const proxy = await startProxy('127.0.0.1', 0, {
    allowlist: () => allowlist,
    resolver: new Resolver(new FakeUpstream({ 'api.test': { a: ['127.0.0.1'] } }), { guard: loopbackOrPublic }),
    audit,
    limits: DEFAULT_LIMITS,
    health: () => ({ healthy: true }),
    report: (m) => void reports.push(m),
    inject: {
      issuer: new LeafIssuer(projectCa, readFileSync(ca.key, 'utf8')),
      credentials: parseCredentials(JSON.stringify({ v: 1, credentials: [{ name: 'openai', host: 'api.test', port, value }] })),
      upstreamCa: readFileSync(up.cert, 'utf8'),
    },
  });
  return {
    proxy,
    port,
    audit,
    reports,
    async open() {
      const raw = net.connect(proxy.address.port, '127.0.0.1');
      await new Promise((r) => raw.once('connect', r));
      raw.write(`CONNECT api.test:${port} HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`);
      await new Promise<void>((r) => raw.once('data', () => r()));
      const c = tls.connect({ socket: raw, servername: 'api.test', ca: projectCa });
      c.on('error', () => undefined);
      await new Promise((r) => c.once('secureConnect', r));
      return c;
    },
    async close() {
      await proxy.close();
      origin.closeAllConnections();
      origin.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
