// Text from the audit log (or anything else the sandbox can influence) made safe to print on a terminal.
// A query name or CONNECT host is chosen by the sandbox: an ESC sequence, a lone CR, a backspace, a line or
// paragraph separator or a bidi override in it could rewrite or reorder what `codex-egress logs` shows
// (a DENY line overwritten by a fake ALLOW). Pure.

/**
 * Everything that is not a visible character: C0 controls, DEL, C1 controls (NEL and the 8-bit CSI among
 * them), format characters (bidi embeddings/overrides/isolates U+202A–202E and U+2066–2069, marks U+200E/F
 * and U+061C, zero-width characters, soft hyphen, BOM, tag characters), line and paragraph separators
 * (U+2028/2029), surrogates, private-use and unassigned code points; and every space but the ASCII one
 * (a no-break space or an ideographic one looks like it, or like nothing).
 */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?! )\p{Zs}/u;
const HIDDEN_OR_BACKSLASH = new RegExp(`${HIDDEN.source}|\\\\`, 'gu');

const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, '0');

/**
 * The text with every hidden character written as an escape: `\xHH` up to U+00FF, `\u{HHHH}` above; a
 * backslash is doubled, so an escape cannot be faked by the text itself. Visible text is unchanged.
 */
export function printable(s: string): string {
  return s.replace(HIDDEN_OR_BACKSLASH, (ch) => {
    if (ch === '\\') return '\\\\';
    const cp = ch.codePointAt(0)!;
    return cp <= 0xff ? `\\x${hex(cp, 2)}` : `\\u{${hex(cp, 4)}}`;
  });
}

/**
 * Text already made printable, its spaces escaped as well (`\x20`): a name, host or other single value
 * the sandbox chose then prints as one token, and cannot pad itself to the terminal's width and show a
 * line of its own (ATTACK18: a DNS name with spaces in it printed what looked like a second, forged
 * audit line).
 */
export const noSpaces = (printed: string): string => printed.replace(/ /g, '\\x20');

/** Values nested deeper than this are shown as "…" (a line nested 20,000 deep would exhaust the stack). */
const MAX_DEPTH = 32;

/** Every string in a parsed JSON value (keys too) made printable; numbers, booleans and null unchanged. */
export function printableDeep<T>(v: T, depth = 0): T {
  if (typeof v === 'string') return printable(v) as T;
  if (v && typeof v === 'object' && depth >= MAX_DEPTH) return '…' as T;
  if (Array.isArray(v)) return v.map((x) => printableDeep(x, depth + 1)) as T;
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [printable(k), printableDeep(x, depth + 1)])) as T;
  return v;
}

const HIDDEN_JSON = new RegExp(HIDDEN.source, 'gu');

/**
 * A JSON text with every hidden character written as a JSON `\uXXXX` escape: the same value when parsed,
 * nothing hidden on the terminal. In valid JSON a raw control character can only be whitespace between
 * tokens: LF and tab stay (pretty-printed output), a CR (which could return to the line's start) becomes a
 * space.
 */
export function printableJson(text: string): string {
  return text.replace(HIDDEN_JSON, (ch) => {
    if (ch === '\t' || ch === '\n') return ch;
    if (ch === '\r') return ' ';
    let r = '';
    for (let i = 0; i < ch.length; i++) r += `\\u${hex(ch.charCodeAt(i), 4).toLowerCase()}`;
    return r;
  });
}
