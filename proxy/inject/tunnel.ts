// An admitted CONNECT tunnel to a host whose credential the gateway injects: the gateway answers the TLS
// handshake itself (a leaf certificate from the per-project CA, HTTP/1.1 only), checks SNI, and hands
// the decrypted stream to the HTTP checks of a plain-HTTP tunnel, which rewrite each request's
// credential header (rewrite.ts) and forward it over verified TLS to the admitted address.
import tls from 'node:tls';
import type net from 'node:net';
import type { Audit } from '../audit.js';
import { quoted } from '../quoted.js';
import type { ClosedBy } from '../reasons.js';
import type { HttpTunnel } from '../http/connect.js';
import { whenRefused } from '../http/pipeline.js';
import { spellsName } from '../http/target.js';
import type { Credential } from './credentials.js';
import type { LeafIssuer } from './ca.js';

export interface InjectOptions {
  issuer: LeafIssuer;
  credentials: readonly Credential[];
  /** Trust for the real hosts: the system roots, plus these (a corporate or test CA). */
  upstreamCa?: string;
}

/** The TLS options of the gateway's own connection to the real host: verified against the name. */
export interface UpstreamTls {
  servername: string;
  ca?: string[];
}

export interface InterceptDeps {
  inject: InjectOptions;
  audit: Audit;
  helloTimeoutMs: number;
  idleTimeoutMs: number;
  toHttp(socket: net.Socket, bytes: Buffer, tunnel: HttpTunnel): void;
}

/** The credential injected for host:port, if any. */
export function credentialFor(inject: InjectOptions | undefined, host: string, port: number): Credential | undefined {
  return inject?.credentials.find((c) => c.host === host && c.port === port);
}

/** What /healthz says about the injection: names and hosts, never a value. */
export function injectSummary(inject: InjectOptions): Array<{ name: string; host: string; port: number; header: string }> {
  return inject.credentials.map((c) => ({ name: c.name, host: c.host, port: c.port, header: c.header }));
}

/** The trust store for upstream connections (undefined: Node's default roots). */
export function upstreamTrust(inject: InjectOptions): string[] | undefined {
  return inject.upstreamCa ? [...tls.rootCertificates, inject.upstreamCa] : undefined;
}

/** Take over an admitted tunnel (the 200 not yet sent): TLS with the client, then the HTTP checks. */
export function intercept(
  deps: InterceptDeps,
  cred: Credential,
  socket: net.Socket,
  head: Buffer,
  tunnel: HttpTunnel,
  done: () => void,
): void {
  const { audit } = deps;
  const base = {
    event: 'connect',
    client: tunnel.client,
    host: tunnel.host,
    port: tunnel.port,
    ip: tunnel.ip,
    rule: tunnel.rule,
    intercepted: true,
    credential_name: cred.name,
    ...(tunnel.mode ? { mode: tunnel.mode } : {}),
  } as const;
  const started = Date.now();
  /** Why the gateway closed the tunnel (the first reason wins); a FIN alone does not (`endedBy`). */
  let closedBy: ClosedBy | undefined;
  let endedBy: 'client' | undefined;
  // What the client sent, and the gateway wrote, before the tunnel's first byte (CONNECT head, 200): not the tunnel's.
  const readBefore = socket.bytesRead - head.length;
  let wroteBefore = 0;
  const trust = upstreamTrust(deps.inject);
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: deps.inject.issuer.contextFor(tunnel.host),
    // HTTP/1.1 only: every request is parsed, checked and rewritten by the same code; an h2-only client fails here
    ALPNProtocols: ['http/1.1'],
  });
  const end = (by: ClosedBy) => {
    closedBy ??= by;
    secure.destroy();
    socket.destroy();
  };
  tunnel.conn.onClose = (why) => end(why);
  socket.setTimeout(deps.idleTimeoutMs, () => end('idle-timeout'));
  audit.write({ ...base, decision: 'allow', reason: 'allowed', status: 200 });
  // a transparent connection (a pool address) was never asked with CONNECT: the TLS handshake comes first
  if (tunnel.mode !== 'transparent') socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  wroteBefore = socket.bytesWritten;
  if (head.length) socket.unshift(head);
  const timer = setTimeout(() => {
    audit.write({
      ...base,
      decision: 'deny',
      reason: 'tls-required',
      detail: `no TLS handshake with the gateway within ${deps.helloTimeoutMs} ms`,
    });
    end('tls-required');
  }, deps.helloTimeoutMs);
  let handed = false;
  secure.on('error', (err: NodeJS.ErrnoException) => {
    if (!handed)
      audit.write({
        ...base,
        decision: 'deny',
        reason: 'tls-required',
        detail: `TLS with the gateway failed: ${err.code ?? err.message}`.slice(0, 300),
      });
    end('error');
  });
  secure.on('end', () => {
    endedBy ??= 'client';
    // the client gave up during the handshake (an untrusted CA, most often): the client side is half-open
    // (the HTTP server's sockets allow it), so it is closed here
    if (handed) return;
    audit.write({
      ...base,
      decision: 'deny',
      reason: 'tls-required',
      detail: 'the client closed during the TLS handshake with the gateway (does it trust the project CA?)',
    });
    handed = true; // one line per tunnel
    end('client');
  });
  secure.once('secure', () => {
    clearTimeout(timer);
    const sni = (secure as tls.TLSSocket & { servername?: string | false }).servername;
    if (typeof sni !== 'string' || !spellsName(sni, tunnel.host)) {
      audit.write({
        ...base,
        decision: 'deny',
        reason: 'sni-mismatch',
        detail: `SNI ${quoted(sni)} is not ${tunnel.host}`,
      });
      return end('sni-mismatch');
    }
    handed = true;
    secure.setTimeout(0);
    // A refusal of a request in it closes the tunnel (reply.ts): the gateway's reason.
    whenRefused(secure, () => (closedBy ??= 'request-refused'));
    deps.toHttp(secure, Buffer.alloc(0), {
      ...tunnel,
      inject: { credential: cred, tls: { servername: tunnel.host, ...(trust ? { ca: trust } : {}) } },
    });
  });
  let closed = false;
  const onClose = () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    secure.destroy();
    done();
    audit.write({
      event: 'tunnel_close',
      client: tunnel.client,
      host: tunnel.host,
      port: tunnel.port,
      ip: tunnel.ip,
      ...(tunnel.mode ? { mode: tunnel.mode } : {}),
      bytes_up: socket.bytesRead - readBefore,
      bytes_down: socket.bytesWritten - wroteBefore,
      ms: Date.now() - started,
      closed_by: closedBy ?? endedBy ?? 'client',
    });
  };
  // the TLS socket took over the client socket's handle: either may report the end
  secure.once('close', onClose);
  socket.once('close', onClose);
}
