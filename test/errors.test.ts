// Every error class of the gateway and the CLI has a `name` of its own and a stable `code`. No I/O.
import t from 'tap';
import { ConfigError } from '../proxy/config.js';
import { UpstreamError } from '../proxy/dns/upstream.js';
import { FirewallError } from '../firewall/apply.js';
import { SetFullError } from '../firewall/allowset.js';
import { UsageError } from '../cli/args.js';
import { DockerError } from '../image/docker.js';
import { ProjectError } from '../image/project.js';
import { Malformed } from '../proxy/dns/wire.js';
import { EffectiveFileError } from '../proxy/effective.js';

t.test('error classes: name and code', async (t) => {
  const table: Array<[Error & { code: string }, string, string]> = [
    [new ConfigError(['bad']), 'ConfigError', 'ERR_CONFIG'],
    [new UpstreamError('x'), 'UpstreamError', 'ERR_UPSTREAM_FAILED'],
    [new FirewallError('x'), 'FirewallError', 'ERR_FIREWALL'],
    [new SetFullError('x'), 'SetFullError', 'ERR_SET_FULL'],
    [new UsageError('x'), 'UsageError', 'ERR_USAGE'],
    [new DockerError(['ps'], 1, 'x'), 'DockerError', 'ERR_DOCKER'],
    [new ProjectError('x'), 'ProjectError', 'ERR_PROJECT'],
    [new Malformed('x'), 'Malformed', 'ERR_DNS_MALFORMED'],
    [new EffectiveFileError('x'), 'EffectiveFileError', 'ERR_EFFECTIVE_ALLOWLIST'],
  ];
  for (const [err, name, code] of table) {
    t.equal(err.name, name, `${name}.name`);
    t.equal(err.code, code, `${name}.code`);
    t.match(String(err), new RegExp(`^${name}: `), `${name} prints its name`);
  }
});
