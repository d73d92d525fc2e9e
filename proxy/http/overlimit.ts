// A client over its concurrent-connection limit (--max-connections) is told so, instead of a socket
// closed without a word: "429 Too Many Requests" with Retry-After and the deny header, and one audit line
// (repeats of it are summarised like every denial). The answer is written before any request is read;
// what the client sends is read and dropped for at most OVERLIMIT_LINGER_MS, so it can read the answer.
// Those sockets are bounded too: past OVERLIMIT_MAX_PENDING at once, a new one is closed at once.
import type net from 'node:net';
import { DENY_HEADER, denyBody } from './reply.js';
import { DENY_STATUS } from '../reasons.js';
import type { Audit } from '../audit.js';

export const RETRY_AFTER_SECONDS = 1;
export const OVERLIMIT_LINGER_MS = 1_000;
export const OVERLIMIT_MAX_PENDING = 1_024;

/** The complete answer to a connection over the limit. Pure. */
export function overLimitReply(limit: number): string {
  const status = DENY_STATUS['connection-limit'];
  const body = denyBody('connection-limit', `more than ${limit} open connections from this client; close some and retry`);
  return (
    `HTTP/1.1 ${status} Too Many Requests\r\n${DENY_HEADER}: connection-limit\r\nretry-after: ${RETRY_AFTER_SECONDS}\r\n` +
    `content-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** The audit line of a connection over the limit. Pure. */
const overLimitEvent = (client: string, limit: number) =>
  ({
    event: 'connect',
    client,
    host: '',
    port: 0,
    decision: 'deny',
    reason: 'connection-limit',
    detail: `over ${limit} concurrent connections`,
  }) as const;

/** Answers connections over the limit; one per proxy server. */
export function overLimitRefuser(audit: Audit, limit: number): (socket: net.Socket, client: string) => void {
  let pending = 0;
  return (socket, client) => {
    audit.write({ ...overLimitEvent(client, limit), status: DENY_STATUS['connection-limit'] });
    if (pending >= OVERLIMIT_MAX_PENDING) {
      socket.destroy();
      return;
    }
    pending++;
    const timer = setTimeout(() => socket.destroy(), OVERLIMIT_LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      pending--;
      clearTimeout(timer);
    });
    socket.on('error', () => socket.destroy());
    socket.on('data', () => undefined); // read and dropped, never parsed (it never reaches http.Server)
    socket.once('end', () => socket.destroy());
    socket.end(overLimitReply(limit));
  };
}

/**
 * Closes transparent connections over the limit (they speak no HTTP to us: no 429 to write), with the
 * same audit line, `mode: transparent`.
 */
export function overLimitCloser(audit: Audit, limit: number): (socket: net.Socket, client: string) => void {
  return (socket, client) => {
    audit.write({ ...overLimitEvent(client, limit), mode: 'transparent' });
    socket.destroy();
  };
}
