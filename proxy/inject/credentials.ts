// The credentials the gateway injects: which host, which header, in which format, and the real value
// (given to the gateway only, in a file outside the workdir). Validated with zod. Pure apart from reading
// the file; no value ever goes into an error message.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { normalizeName } from '../policy/names.js';

/** What the sandbox holds in place of every credential. */
export const SENTINEL = 'codex-egress-managed';

/** What happens to a request to an injected host whose header holds something other than the sentinel. */
export const FOREIGN_MODES = ['forward', 'refuse'] as const;
export type ForeignMode = (typeof FOREIGN_MODES)[number];

const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'keep-alive',
  'te',
  'trailer',
  'expect',
]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A header value's bytes: no CR, LF, NUL or other control characters (a value is never a second header). */
const VALUE = /^[\x20-\x7e\x80-\xff]+$/;

export const credentialSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a credential name is lower-case letters, digits, _ and - (at most 63)'),
    host: z.string().transform((s, ctx) => {
      const n = normalizeName(s);
      if (!n.ok) {
        ctx.addIssue({ code: 'custom', message: n.message });
        return z.NEVER;
      }
      return n.name;
    }),
    port: z.number().int().min(1).max(65535).default(443),
    header: z
      .string()
      .regex(TOKEN, 'not a header name')
      .transform((s) => s.toLowerCase())
      // a header that frames, routes or upgrades the request is never a credential's
      .refine((h) => !RESERVED_HEADERS.has(h) && !h.startsWith('proxy-'), 'this header cannot carry a credential')
      .default('authorization'),
    /**
     * How the header value is made from the credential: a template with `{value}` once (`Bearer {value}`,
     * `token {value}`), or `basic:USER` for `Basic base64(USER:value)` (git over HTTPS).
     */
    format: z
      .string()
      .refine(
        (f) => (f.startsWith('basic:') ? !f.slice(6).includes(':') && f.length > 6 : f.split('{value}').length === 2),
        'format is a template with {value} once, or basic:USER',
      )
      .default('Bearer {value}'),
    value: z.string().regex(VALUE, 'the value is empty or holds control characters (a line break?)'),
    foreign: z.enum(FOREIGN_MODES).default('forward'),
  })
  .strict();
export type Credential = z.output<typeof credentialSchema>;
export type CredentialInput = z.input<typeof credentialSchema>;

export const credentialsFileSchema = z
  .object({ v: z.literal(1), credentials: z.array(credentialSchema) })
  .strict()
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    for (const c of f.credentials) {
      const k = `${c.host}:${c.port}`;
      if (seen.has(k)) ctx.addIssue({ code: 'custom', message: `two credentials for ${k}` });
      seen.add(k);
    }
  });

export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
  readonly code = 'ERR_CREDENTIALS';
}

/** Parse the credentials file's content. Errors name the field, never a value. */
export function parseCredentials(text: string): Credential[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CredentialsError('the credentials file is not JSON');
  }
  const r = credentialsFileSchema.safeParse(json);
  if (!r.success)
    throw new CredentialsError(
      `the credentials file is invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ')}`,
    );
  return r.data.credentials;
}

export function readCredentials(path: string): Credential[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CredentialsError(`cannot read the credentials file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseCredentials(text);
}

/** The header value `format` makes of `value`. */
export function headerValue(format: string, value: string): string {
  if (format.startsWith('basic:')) return `Basic ${Buffer.from(`${format.slice(6)}:${value}`).toString('base64')}`;
  return format.replace('{value}', () => value);
}
