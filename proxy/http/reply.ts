// The proxy's own answers: a refusal or error with its reason, and the lingering close after it.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { refused, refusedHere } from './pipeline.js';

export const DENY_HEADER = 'x-codex-egress-deny';

/** After an error reply, how long and how much of the client's request is read and dropped before closing. */
export const LINGER_MS = 5_000;
export const LINGER_BYTES = 4 * 1024 * 1024;

export function denyBody(reason: string, detail?: string): string {
  return `codex-egress: request blocked (${reason})${detail ? `: ${detail}` : ''}\n`;
}

/** A complete error response, for a raw socket. */
export function replyText(status: number, reason: string, detail?: string): string {
  const body = denyBody(reason, detail);
  const text = http.STATUS_CODES[status] ?? 'Error';
  return `HTTP/1.1 ${status} ${text}\r\n${DENY_HEADER}: ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** Sockets closing lingering (`lingerClose` is called again when two reasons to close meet). */
const lingering = new WeakSet<Duplex>();

/**
 * Close a connection the way a client still sending can read the answer: stop writing (FIN), then read
 * and drop what the client sends — no more than LINGER_BYTES, for no longer than LINGER_MS — and close
 * once it stops. Closing at once with unread bytes in the kernel's buffer sends a reset, and the client
 * sees `connection reset` instead of the 400 or 431 already written.
 */
export function lingerClose(socket: Duplex): void {
  if (socket.destroyed || lingering.has(socket)) return;
  lingering.add(socket);
  // Nothing more is parsed from this connection: whatever follows is dropped, never a new request.
  socket.removeAllListeners('data');
  let read = 0;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > LINGER_BYTES) socket.destroy();
  });
  socket.once('end', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
  socket.on('error', () => socket.destroy());
  if (!socket.writableEnded) socket.end();
  socket.resume();
}

/**
 * When node:http closes `socket` after its last answer (a `connection: close` one), linger instead: it
 * would close it as soon as that answer is written, and what the client still sends would reset the
 * connection (and the answer with it).
 */
export function lingerAfterAnswers(socket: Duplex): void {
  (socket as Duplex & { destroySoon?: () => void }).destroySoon = () => lingerClose(socket);
}

/** Write an error response on a raw socket (CONNECT, upgrade, parse errors) and linger-close it. */
export function rawReply(socket: Duplex, status: number, reason: string, detail?: string): void {
  refusedHere(socket);
  if (socket.writable && !socket.writableEnded) socket.write(replyText(status, reason, detail));
  lingerClose(socket);
}

/**
 * Answer a plain-HTTP request with a refusal and close its connection (lingering): a refused request's
 * connection carries nothing more (pipeline.ts), and the upstream side of it is never reused.
 */
export function refuseResponse(res: http.ServerResponse, status: number, reason: string, detail?: string): void {
  refused(res.req);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // The connection's (an answer queued behind others has none of its own yet).
  const socket = res.socket ?? res.req.socket;
  if (socket) lingerAfterAnswers(socket);
  const body = denyBody(reason, detail);
  res.writeHead(status, {
    [DENY_HEADER]: reason,
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}
