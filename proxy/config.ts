// The gateway's configuration, validated with zod. Also the allowlist file and its companion. Small I/O only.
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { mergeSources, type Allowlist } from './policy/allowlist.js';
import { PRESET_NAMES, type PresetName } from './policy/presets.js';
import { parseRuleFile, type RulesResult } from './policy/rules.js';
import type { Upstream } from './dns/upstream.js';
import { DNS_PORT, GATEWAY_ALLOWLIST_PATH, PROXY_PORT } from './endpoints.js';
import { readOnce, type FileRead } from './watch-file.js';

export interface ProxyLimits {
  /** Upstream TCP connect timeout. */
  connectTimeoutMs: number;
  /** Time allowed for a client to send complete request headers (slowloris). */
  headersTimeoutMs: number;
  /** A tunnel or connection with no traffic in either direction for this long is closed. */
  idleTimeoutMs: number;
  /** Time a CONNECT client has for its first bytes (for TLS: the handshake up to the server's hello). */
  helloTimeoutMs: number;
  maxHeaderBytes: number;
  maxConnectionsPerClient: number;
}

/** The proxy's limits and their defaults (README: configuration). */
export const DEFAULT_LIMITS: ProxyLimits = {
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 15 * 60_000,
  helloTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  maxConnectionsPerClient: 512,
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_CONFIG';
  constructor(readonly errors: string[]) {
    super(errors.join('\n'));
  }
}

const upstream = z.string().transform((s, ctx): Upstream => {
  const m = /^([0-9.]+)(?::([0-9]{1,5}))?$/.exec(s.trim());
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (!m || !isIPv4(m[1]!) || port < 1 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `upstream "${s}" must be an IPv4 address with an optional :port` });
    return z.NEVER;
  }
  return { host: m[1]!, port };
});

const port = z.number().int().min(0).max(65535);

export const gatewayConfig = z.object({
  listen: z.string().refine(isIPv4, 'listen address must be an IPv4 address'),
  dnsPort: port,
  proxyPort: port,
  upstreams: z.array(upstream).min(1, 'no upstream DNS resolver: give --upstream or a nameserver in /etc/resolv.conf'),
  allowlistPath: z.string().min(1),
  allow: z.array(z.string()),
  defaults: z.boolean(),
  /** A preset (policy/presets.ts): its rules are added after the defaults. */
  preset: z.enum(PRESET_NAMES as [PresetName, ...PresetName[]]).optional(),
  envAllowed: z.string().optional(),
  auditLog: z.string().min(1),
  /** The audit log file rotates when it reaches this size (bytes); `auditLogKeep` rotated files are kept. */
  auditLogMaxBytes: z
    .number()
    .int()
    .min(64 * 1024),
  auditLogKeep: z.number().int().min(1).max(100),
  firewall: z.boolean(),
  /** The interface the sandbox reaches the gateway on (default: the one holding the listen address). */
  sandboxInterface: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,15}$/, 'not an interface name (letters, digits, _ . - ; at most 15)')
    .optional(),
  /** Most addresses the firewall's allow set holds; when full, DNS answers are refused. */
  firewallSetSize: z.number().int().min(1).max(1_000_000),
  dnsTimeoutMs: z.number().int().min(50).max(60_000),
  /** Transparent mode (proxy/transparent/): DNS answers an allowed name with a pool address of the gateway. */
  transparent: z.boolean().default(false),
  /** Its pool, an IPv4 CIDR on the sandbox's network (default: the upper half of the listen address's /24). */
  transparentPool: z.string().optional(),
  /** Credential injection (proxy/inject): the credentials file, the CA directory, extra upstream trust. */
  inject: z.object({ credentials: z.string().min(1), caDir: z.string().min(1), upstreamCa: z.string().min(1).optional() }).optional(),
  limits: z.object({
    connectTimeoutMs: z.number().int().positive(),
    headersTimeoutMs: z.number().int().positive(),
    idleTimeoutMs: z.number().int().positive(),
    helloTimeoutMs: z.number().int().positive(),
    maxHeaderBytes: z
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024),
    maxConnectionsPerClient: z.number().int().positive(),
  }),
});
export type GatewayConfig = z.output<typeof gatewayConfig>;
export type GatewayConfigInput = z.input<typeof gatewayConfig>;

export const defaultConfig = (): Omit<GatewayConfigInput, 'upstreams'> => ({
  listen: '0.0.0.0',
  dnsPort: DNS_PORT,
  proxyPort: PROXY_PORT,
  allowlistPath: GATEWAY_ALLOWLIST_PATH,
  allow: [],
  defaults: true,
  envAllowed: process.env.OPENAI_ALLOWED_DOMAINS,
  auditLog: '-',
  auditLogMaxBytes: 64 * 1024 * 1024,
  auditLogKeep: 4,
  firewall: true,
  firewallSetSize: 65_536,
  dnsTimeoutMs: 2000,
  limits: { ...DEFAULT_LIMITS } satisfies ProxyLimits,
});

export function parseConfig(input: GatewayConfigInput): GatewayConfig {
  const r = gatewayConfig.safeParse(input);
  if (!r.success) {
    throw new ConfigError(r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)));
  }
  return r.data;
}

/** IPv4 nameservers listed in a resolv.conf. */
export function resolvConfUpstreams(content: string): string[] {
  return content
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((ip): ip is string => !!ip && isIPv4(ip));
}

/** Read the allowlist file; a missing file is an empty list (it may be created later). */
export async function readRuleFile(path: string): Promise<RulesResult> {
  return rulesOf(await readOnce(path), path);
}

/** The rules of the file as read: none when it does not exist; a file that cannot be read is an error. */
export function rulesOf(r: FileRead, path: string): RulesResult {
  if ('bytes' in r) return parseRuleFile(r.bytes.toString('utf8'), path);
  return 'missing' in r ? { ok: true, rules: [] } : { ok: false, errors: [`${path}: ${r.error.message}`] };
}

/** Build the merged allowlist from the configuration and the file's content (`file`: as read once already). */
export async function loadAllowlist(cfg: GatewayConfig, file?: FileRead): Promise<Allowlist> {
  const r = mergeSources({
    defaults: cfg.defaults,
    preset: cfg.preset,
    env: cfg.envAllowed,
    flags: cfg.allow,
    file: rulesOf(file ?? (await readOnce(cfg.allowlistPath)), cfg.allowlistPath),
  });
  if (!r.ok) throw new ConfigError(r.errors);
  return r.allowlist;
}

/** The effective allowlist file (its path, format, writer and reader): proxy/effective.ts. */
export { effectivePath, writeEffective } from './effective.js';
