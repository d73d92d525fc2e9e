// `codex-egress secret set|list|rm`: credentials for other hosts (a GitHub token for gh/git), injected by
// the gateway like the OpenAI key. Kept in the project's state directory (0600, never the workdir): a
// value given on standard input, or a host command run at every `up` (its output is the value).
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { parse, UsageError } from './args.js';
import { EXIT, WORKDIR_HELP, workdirOptions, projectFrom, out, err, json } from './common.js';
import { credentialPaths, type ResolvedSecret } from '../image/credentials.js';
import { credentialSchema, FOREIGN_MODES } from '../proxy/inject/credentials.js';

export const SECRET_USAGE = `Usage: codex-egress secret set NAME --host HOST (--command CMD | --value-stdin) [options]
       codex-egress secret list [--json]
       codex-egress secret rm NAME

A credential the gateway injects for HOST: the sandbox holds only the sentinel "codex-egress-managed"
(and, with --env, a variable holding it); the gateway replaces it in the header of each request to
HOST. Stored beside the project's state directory (mode 0600), never in the workdir. Applies at the next "up".

Options of set:
  --host HOST             the host (HTTPS, port 443 unless --port)
  --port N                its port (default 443)
  --header NAME           the header that carries it (default authorization)
  --format F              "Bearer {value}" (default), "token {value}", any template with {value} once,
                          or basic:USER for "Basic base64(USER:value)" (git over HTTPS)
  --command CMD           a host command whose output is the value, run by sh at every up (e.g. "gh auth token")
  --value-stdin           read the value from standard input (stored)
  --env NAME              the sandbox gets NAME=codex-egress-managed (e.g. GH_TOKEN)
  --refuse-foreign        refuse requests to HOST carrying another value (default: forward them unchanged)
${WORKDIR_HELP}
  -h, --help              this help`;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const stored = z
  .object({
    name: z.string(),
    host: z.string(),
    port: z.number().int().optional(),
    header: z.string().optional(),
    format: z.string().optional(),
    foreign: z.enum(FOREIGN_MODES).optional(),
    env: z.string().regex(ENV_NAME).optional(),
    command: z.string().min(1).optional(),
    value: z.string().min(1).optional(),
  })
  .strict()
  .refine((s) => !!s.command !== !!s.value, 'exactly one of command and value');
type Stored = z.infer<typeof stored>;
const storedFile = z.object({ v: z.literal(1), secrets: z.array(stored) }).strict();

export function readSecrets(file: string): Stored[] {
  if (!existsSync(file)) return [];
  const r = storedFile.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!r.success) throw new UsageError(`${file}: not a secrets file (${r.error.issues[0]?.message ?? 'invalid'}): fix or remove it`);
  return r.data.secrets;
}

function writeSecrets(file: string, secrets: Stored[]): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ v: 1, secrets }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Every stored secret with its value (commands run now, on the host). Errors never carry a value. */
export async function resolveSecrets(file: string): Promise<ResolvedSecret[]> {
  const out: ResolvedSecret[] = [];
  for (const s of readSecrets(file)) {
    let value = s.value;
    if (s.command) {
      const r = await execa('sh', ['-c', s.command], { reject: false, timeout: 30_000, stdin: 'ignore' });
      if (r.exitCode !== 0)
        throw new UsageError(
          `secret ${s.name}: its command failed (exit ${r.exitCode ?? 'timeout'}); "codex-egress secret rm ${s.name}" to drop it`,
        );
      value = String(r.stdout).trim();
      if (!value || /[\r\n]/.test(value))
        throw new UsageError(`secret ${s.name}: its command printed ${value ? 'more than one line' : 'nothing'}`);
    }
    const { command: _c, value: _v, env, ...rest } = s;
    out.push({ credential: { ...rest, value: value! }, ...(env ? { env } : {}) });
  }
  return out;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export async function secretCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(
    argv,
    {
      ...workdirOptions,
      host: { type: 'string' },
      port: { type: 'string' },
      header: { type: 'string' },
      format: { type: 'string' },
      command: { type: 'string' },
      'value-stdin': { type: 'boolean' },
      env: { type: 'string' },
      'refuse-foreign': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    true,
  );
  const [verb, name, ...extra] = positionals;
  if (extra.length) throw new UsageError(`unexpected ${extra.join(' ')}`);
  const file = credentialPaths(projectFrom(v).paths).secrets;
  const secrets = readSecrets(file);
  if (verb === 'list') {
    const shown = secrets.map((s) => ({
      name: s.name,
      host: s.host,
      port: s.port ?? 443,
      header: s.header ?? 'authorization',
      format: s.format ?? 'Bearer {value}',
      source: s.command ? `command: ${s.command}` : 'stored value',
      env: s.env ?? null,
      foreign: s.foreign ?? 'forward',
    }));
    if (v.json) json({ secrets: shown });
    else if (!shown.length) err('codex-egress: no secrets');
    else for (const s of shown) out(`${s.name}\t${s.host}:${s.port}\t${s.header}\t${s.source}${s.env ? `\tenv ${s.env}` : ''}`);
    return EXIT.ok;
  }
  if (!name) throw new UsageError(`secret ${verb ?? ''}: a NAME is needed (see --help)`);
  if (verb === 'rm') {
    const left = secrets.filter((s) => s.name !== name);
    if (left.length === secrets.length) throw new UsageError(`no secret ${name}`);
    writeSecrets(file, left);
    err(`codex-egress: secret ${name} removed (applies at the next up)`);
    return EXIT.ok;
  }
  if (verb !== 'set') throw new UsageError(`secret: unknown verb ${verb ?? '(none)'}: set, list or rm`);
  if (!v.host) throw new UsageError('secret set: --host is required');
  if (!v.command === !v['value-stdin']) throw new UsageError('secret set: give exactly one of --command and --value-stdin');
  if (name === 'openai') throw new UsageError('secret set: "openai" is the OpenAI key (CODEX_API_KEY): choose another name');
  if (v.env && (!ENV_NAME.test(v.env) || ['CODEX_API_KEY', 'OPENAI_API_KEY', 'PATH', 'HOME'].includes(v.env)))
    throw new UsageError(`secret set: --env ${v.env} is not a usable variable name`);
  const port = v.port === undefined ? undefined : Number(v.port);
  const entry: Stored = {
    name,
    host: v.host,
    ...(port !== undefined ? { port } : {}),
    ...(v.header ? { header: v.header } : {}),
    ...(v.format ? { format: v.format } : {}),
    ...(v['refuse-foreign'] ? { foreign: 'refuse' as const } : {}),
    ...(v.env ? { env: v.env } : {}),
    ...(v.command ? { command: v.command } : { value: await readStdin() }),
  };
  // the same checks the gateway makes, now (with a stand-in for a command's value)
  const { env: _e, command: _c, value: _v, ...fields } = entry;
  const check = credentialSchema.safeParse({ ...fields, value: entry.value ?? 'x' });
  if (!check.success)
    throw new UsageError(
      `secret set: ${check.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.path[0] === 'value' ? 'empty, or holds a line break or control character' : i.message}`).join('; ')}`,
    );
  if (secrets.some((s) => s.name !== name && s.host.toLowerCase() === check.data.host && (s.port ?? 443) === check.data.port))
    throw new UsageError(`secret set: another secret is for ${check.data.host}:${check.data.port}`);
  writeSecrets(file, [...secrets.filter((s) => s.name !== name), entry]);
  err(`codex-egress: secret ${name} for ${check.data.host}:${check.data.port} set (applies at the next up)`);
  return EXIT.ok;
}
