// The gateway's fixed points, stated once: its ports, its health check, and where its files are in its
// image. The gateway's defaults (proxy/config.ts), the appliance's docker arguments (image/args.ts,
// image/appliance.ts) and the gateway image (image/Dockerfile.gateway: HEALTHCHECK, CMD, the directories
// it makes; test/image.test.ts holds the file to this module) all take them from here. Pure.

export const PROXY_PORT = 3128;
export const DNS_PORT = 53;
export const HEALTH_PATH = '/healthz';

/** The health endpoint of a gateway listening on `host`. */
export const healthUrl = (host: string, port = PROXY_PORT) => `http://${host}:${port}${HEALTH_PATH}`;

/** The command (run in the gateway's container, which has node) that exits 0 only when /healthz says healthy. */
export function healthCommand(host: string): string[] {
  return ['node', '-e', `fetch(${JSON.stringify(healthUrl(host))}).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))`];
}

/** How often Docker runs the health check, and how patiently (the image's HEALTHCHECK and `up`'s --health-*). */
export const HEALTH_TIMING = { interval: '5s', timeout: '3s', retries: 3, startPeriod: '20s' } as const;

/** In the gateway's image: the allowlist's directory (mounted by `up`) and file, the audit log's. */
export const GATEWAY_ALLOWLIST_DIR = '/etc/codex';
export const ALLOWLIST_FILE = 'allowed_domains.txt';
export const GATEWAY_LOG_DIR = '/var/log/codex-egress';
export const AUDIT_FILE = 'audit.jsonl';
export const GATEWAY_ALLOWLIST_PATH = `${GATEWAY_ALLOWLIST_DIR}/${ALLOWLIST_FILE}`;
export const GATEWAY_AUDIT_PATH = `${GATEWAY_LOG_DIR}/${AUDIT_FILE}`;
