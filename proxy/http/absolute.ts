// An absolute-form request or WebSocket upgrade on the proxy port (read by http.Server or by the front
// door): its checks, in order — URL, framing, decision + lookup + re-check (admit.ts), Host naming the
// URL's host. Every refusal is audited and answered through the caller's `refuse`.
import type http from 'node:http';
import { admit, type AdmitDeps } from './admit.js';
import { checkRequestHead } from './framing.js';
import type { Forward, RequestAudit } from './forward.js';
import { hostHeaderMatches, parseAbsoluteUrl } from './target.js';
import { quoted } from '../quoted.js';

/** What the checks of an absolute-form request read from it: from http.Server's request, or from head.ts. */
export interface AbsoluteRequest {
  method: string;
  url: string;
  httpVersion: string;
  rawHeaders: string[];
  /** The Host header (one: checkRequestHead refuses two), and Upgrade. */
  host: string | undefined;
  upgrade?: string;
}

export const absolute = (req: http.IncomingMessage): AbsoluteRequest => ({
  method: req.method ?? '',
  url: req.url ?? '',
  httpVersion: req.httpVersion,
  rawHeaders: req.rawHeaders,
  host: req.headers.host,
  upgrade: req.headers.upgrade,
});

export interface AbsoluteDeps extends AdmitDeps {
  log(e: RequestAudit): void;
}

/** The checks of `req`; the forward when it passes them, undefined once refused through `refuse`. */
export async function admitAbsolute(
  deps: AbsoluteDeps,
  req: AbsoluteRequest,
  client: string,
  via: 'request' | 'websocket',
  refuse: (status: number, reason: string, detail?: string) => void,
): Promise<Omit<Forward, 'tls'> | undefined> {
  const { log } = deps;
  const method = req.method;
  const t = parseAbsoluteUrl(req.url);
  const bad = (detail: string, h = '', p = 0) => {
    log({ event: 'http', client, host: h, port: p, method, decision: 'deny', reason: 'bad-request', status: 400, detail });
    refuse(400, 'bad-request', detail);
  };
  if (via === 'websocket' && String(req.upgrade).toLowerCase() !== 'websocket')
    return void bad('only absolute-form WebSocket upgrades are proxied');
  if (!t.ok) return void bad(via === 'websocket' ? 'only absolute-form WebSocket upgrades are proxied' : t.detail);
  const head = checkRequestHead(method, req.httpVersion, req.rawHeaders, via === 'websocket');
  if (!head.ok) return void bad(head.detail, t.host.slice(0, 255), t.port);
  const a = await admit(deps, via, 'http', client, t.host, t.port);
  if (!a.ok) {
    log({
      event: 'http',
      client,
      host: a.decision.host ?? t.host.slice(0, 255),
      port: t.port,
      method,
      rule: a.decision.rule,
      decision: 'deny',
      reason: a.reason,
      status: a.status,
      detail: a.detail,
    });
    return void refuse(a.status, a.reason, a.detail);
  }
  const base = { event: 'http', client, host: a.decision.host, port: t.port, ip: a.ip, method, rule: a.decision.rule } as const;
  if (!hostHeaderMatches(req.host, a.decision.host, t.port)) {
    a.done();
    log({ ...base, decision: 'deny', reason: 'host-mismatch', status: 403, detail: `Host: ${quoted(req.host)}` });
    return void refuse(403, 'host-mismatch', 'the Host header must name the URL host');
  }
  return { conn: a.conn, done: a.done, ip: a.ip, port: t.port, method, path: t.path, headers: head.headers, audit: base };
}
