// Host-name normalisation: the one spelling every check compares. No I/O.
import { domainToASCII } from 'node:url';
import { isIP } from 'node:net';

export const MAX_NAME_LENGTH = 253;
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
// WHATWG URL parsing turns a host whose last label is a number (decimal, 0x hex or octal) into an IPv4
// address ("2130706433", "0x7f.1", "127.1"), so such a host is an IP literal, never a name.
const NUMERIC_LABEL = /^(0x[0-9a-f]*|[0-9]+)$/;

export type NameResult = { ok: true; name: string } | { ok: false; reason: 'ip-literal' | 'invalid-host'; message: string };

/** True when the text is an IP address in any spelling a client or URL parser would accept. */
export function isIpLiteral(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/\.$/, '');
  if (h.startsWith('[') || h.includes(':')) return true;
  if (isIP(h) !== 0) return true;
  const labels = h.split('.');
  return NUMERIC_LABEL.test(labels[labels.length - 1] ?? '');
}

/**
 * Normalise a host name: lower case, one trailing dot removed, IDN to punycode, then strict
 * letter-digit-hyphen labels. Anything else (IP literals, empty labels, '%', '_', spaces, over-long
 * names) is refused, so no other spelling of a name can reach the matcher.
 */
export function normalizeName(input: string): NameResult {
  let host = input;
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0) return { ok: false, reason: 'invalid-host', message: 'empty host name' };
  if (isIpLiteral(host)) return { ok: false, reason: 'ip-literal', message: `${input} is an IP address, not a name` };
  // Only visible, non-space characters may reach the IDN conversion; it would silently drop some others.
  if (/[\s\u0000-\u001f\u007f%/\\@?#[\]:*]/u.test(host)) {
    return { ok: false, reason: 'invalid-host', message: `${JSON.stringify(input)} is not a valid host name` };
  }
  const ascii = domainToASCII(host.toLowerCase());
  if (ascii === '' || ascii.length > MAX_NAME_LENGTH) {
    return { ok: false, reason: 'invalid-host', message: `${JSON.stringify(input)} is not a valid host name` };
  }
  if (isIpLiteral(ascii)) return { ok: false, reason: 'ip-literal', message: `${input} is an IP address, not a name` };
  const labels = ascii.split('.');
  if (!labels.every((l) => LABEL.test(l))) {
    return { ok: false, reason: 'invalid-host', message: `${JSON.stringify(input)} is not a valid host name` };
  }
  return { ok: true, name: ascii };
}
