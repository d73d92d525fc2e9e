// Text the sandbox sent, quoted for an audit line's `detail` (pure).

/**
 * What the sandbox sent (a Host header, an SNI, a request target), quoted for a line's `detail`: at
 * most `max` characters, as a JSON string whose spaces are escaped too, so it reads as one value and
 * cannot pad itself into what looks like a line of its own when the log is shown (ATTACK18).
 */
export function quoted(value: unknown, max = 255): string {
  return JSON.stringify(String(value).slice(0, max)).replace(/\p{Z}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
