// Text from the audit log (or anything else the sandbox can influence) made safe to print on a terminal.
// A query name or CONNECT host is chosen by the sandbox: an ESC sequence, a lone CR, a backspace, a line or
// paragraph separator or a bidi override in it could rewrite or reorder what `codex-egress logs` shows
// (a DENY line overwritten by a fake ALLOW). Pure.

/**
 * Everything that is not a visible character: C0 controls, DEL, C1 controls (NEL and the 8-bit CSI among
 * them), format characters (bidi embeddings/overrides/isolates U+202A–202E and U+2066–2069, marks U+200E/F
 * and U+061C, zero-width characters, soft hyphen, BOM, tag characters), line and paragraph separators
 * (U+2028/2029), surrogates, private-use and unassigned code points.
 */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;
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

/** Every string in a parsed JSON value (keys too) made printable; numbers, booleans and null unchanged. */
export function printableDeep<T>(v: T): T {
  if (typeof v === 'string') return printable(v) as T;
  if (Array.isArray(v)) return v.map(printableDeep) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [printable(k), printableDeep(x)])) as T;
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
