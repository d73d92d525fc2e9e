// A whole gateway (proxy/gateway.ts) on ephemeral loopback ports, its allowlist file at `file`, with a
// firewall stand-in (the reload path runs as with --firewall; no packet filter is touched).
import { join, dirname } from 'node:path';
import { defaultConfig, parseConfig } from '../../proxy/config.js';
import { startGateway, type Firewall, type Gateway } from '../../proxy/gateway.js';

const noFirewall: Firewall = {
  onResolved: (() => undefined) as unknown as Firewall['onResolved'],
  onReload: () => Promise.resolve(),
  status: () => ({ up: true }),
  stop: () => Promise.resolve(),
};

/** `allow`: --allow flags besides the file. The audit log goes next to the file. */
export function startFileGateway(file: string, allow: string[] = []): Promise<Gateway> {
  const cfg = parseConfig({
    ...defaultConfig(),
    listen: '127.0.0.1',
    dnsPort: 0,
    proxyPort: 0,
    upstreams: ['127.0.0.1:9'],
    allowlistPath: file,
    allow,
    defaults: false,
    envAllowed: undefined,
    auditLog: join(dirname(file), 'audit.log'),
    firewall: true,
  });
  return startGateway(
    cfg,
    () => undefined,
    async () => noFirewall,
  );
}
