// Orchestration of the appliance: bring the topology up in order (networks → gateway created, connected
// to its egress network, started, healthy → sandbox), verify it, take it down. Arguments come from args.ts.
import { readFile } from 'node:fs/promises';
import { readEffective } from '../proxy/effective.js';
import { join } from 'node:path';
import {
  egressNetworkArgs,
  gatewayCreateArgs,
  connectEgressArgs,
  sandboxCreateArgs,
  sandboxUserFixArgs,
  projectFilter,
  CODEX_SANDBOX_LABEL,
  SANDBOX_USER_LABEL,
  type GatewayOptions,
  type SandboxOptions,
} from './args.js';
import { docker, dockerResult, exists } from './docker.js';
import { PROXY_PORT, healthCommand, healthUrl } from '../proxy/endpoints.js';
import { PROJECT_LABEL, WORKDIR_LABEL, type Project } from './names.js';
import { PACKAGE_ROOT } from './context.js';
import { createInternalNetwork, liveProject } from './subnet.js';
import { readOnlyDestinations } from './readonly.js';
import { sandboxTrustArgs } from './credentials.js';

export interface UpPlan {
  project: Project;
  gateway: GatewayOptions;
  sandbox: SandboxOptions;
  /** An existing network to use as the gateway's way out (not created, not removed); else one is made. */
  egressNetwork?: string;
  healthTimeoutMs?: number;
  /** The subnet was given (--subnet): only that /24; otherwise a free one is picked (image/subnet.ts). */
  subnetFixed?: boolean;
}

export type Log = (line: string) => void;

/**
 * Bring everything up. On failure, what was created is removed again (nothing half-made is left).
 * Returns the project with the addresses it got (its /24 may not be the derived one: image/subnet.ts).
 */
export async function up(plan: UpPlan, log: Log): Promise<Project> {
  let p = plan.project;
  if (await exists('container', p.gateway)) throw new Error(`${p.gateway} already exists: run "codex-egress down" first, or "status"`);
  try {
    if (!(await exists('network', p.internalNetwork))) {
      p = await createInternalNetwork(p, !!plan.subnetFixed, log);
      log(`network ${p.internalNetwork} (internal, ${p.subnet}, no host address)`);
    } else p = await liveProject(p);
    const egress = plan.egressNetwork ?? p.egressNetwork;
    if (!plan.egressNetwork && !(await exists('network', egress))) {
      log(`network ${egress} (egress)`);
      await docker(egressNetworkArgs(p));
    }
    log(`gateway ${p.gateway} at ${p.gatewayIp} (${plan.gateway.firewall ? 'firewall on' : 'NO FIREWALL: development only'})`);
    await docker(gatewayCreateArgs(p, plan.gateway));
    await docker(connectEgressArgs(p, egress));
    await docker(['start', p.gateway]);
    await waitHealthy(p, plan.healthTimeoutMs ?? 60_000);
    log(`sandbox ${p.sandbox} at ${p.sandboxIp}`);
    await docker(sandboxCreateArgs(p, plan.sandbox));
    await docker(['start', p.sandbox]);
    await docker(sandboxUserFixArgs(p, plan.sandbox.uid, plan.sandbox.gid));
    if (plan.sandbox.trustCa) await docker(sandboxTrustArgs(p));
  } catch (err) {
    log(`up failed: ${(err as Error).message}; removing what was created`);
    await down(p, () => undefined);
    throw err;
  }
  return p;
}

/** Poll the gateway's /healthz (inside its container) until healthy; bounded in time. */
export async function waitHealthy(p: Project, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    // With the restart policy a gateway that cannot start would be restarted in a loop: at start-up, an
    // exit is an exit, restarted or not.
    const st = await dockerResult(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}', p.gateway]);
    const [status, code, restarts] = st.stdout.trim().split(' ');
    if (status !== 'running' || Number(restarts) > 0) {
      const logs = await dockerResult(['logs', '--tail', '20', p.gateway]);
      throw new Error(
        `the gateway exited (code ${code}${Number(restarts) > 0 ? `, restarted ${restarts}×` : ''}):\n${(logs.stderr + logs.stdout).trim()}`,
      );
    }
    const r = await dockerResult(['exec', p.gateway, ...healthCommand(p.gatewayIp)], { timeoutMs: 10_000 });
    if (r.exitCode === 0) return;
    last = r.stderr.trim();
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new Error(`the gateway did not become healthy within ${timeoutMs / 1000} s${last ? `: ${last}` : ''}`);
}

/**
 * Ask the gateway to re-read its allowlist now (SIGHUP). Sent from inside the container to its PID 1
 * (docker-init forwards it to node): `docker kill --signal HUP` would mark the container as stopped by
 * hand, and Docker would then no longer restart it after a crash.
 */
export async function reloadGateway(p: Project): Promise<void> {
  await dockerResult(['exec', p.gateway, 'sh', '-c', 'kill -HUP 1'], { timeoutMs: 30_000 });
}

/** The Codex sandbox mode and user the sandbox container was made with (its labels). */
export async function codexMode(p: Project): Promise<{ mode: string; user?: string } | undefined> {
  const r = await dockerResult(
    [
      'inspect',
      '--format',
      `{{index .Config.Labels "${CODEX_SANDBOX_LABEL}"}} {{index .Config.Labels "${SANDBOX_USER_LABEL}"}}`,
      p.sandbox,
    ],
    { timeoutMs: 30_000 },
  );
  if (r.exitCode !== 0) return undefined;
  const [mode = '', user] = r.stdout.trim().split(' ');
  return { mode: mode || 'unknown', ...(user ? { user } : {}) };
}

/**
 * The workdirs (their labels) of the running containers of every other codex-egress project on this
 * engine: a sandbox running there can change what lies in its workdir at any time.
 */
export async function otherRunningWorkdirs(p: Project): Promise<Array<{ name: string; workdir: string }>> {
  const ids = (await docker(['ps', '-q', '--filter', `label=${WORKDIR_LABEL}`])).split('\n').filter(Boolean);
  if (!ids.length) return [];
  const fmt = `{{index .Config.Labels "${PROJECT_LABEL}"}}\t{{index .Config.Labels "${WORKDIR_LABEL}"}}`;
  const r = await dockerResult(['inspect', '--format', fmt, ...ids], { timeoutMs: 30_000 });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [name = '', workdir = ''] = l.split('\t');
      return { name, workdir };
    })
    .filter((o) => o.name !== p.name && o.workdir !== '');
}

/**
 * The host directories a container has mounted read-write, as Docker reports them (real paths); []
 * when the container does not exist. What a running sandbox can change is what it was started with,
 * whatever flags a later command is given.
 */
export async function writableMounts(container: string): Promise<string[]> {
  const r = await dockerResult(['inspect', '--format', '{{json .Mounts}}', container], { timeoutMs: 30_000 });
  if (r.exitCode !== 0) return [];
  let mounts: Array<{ Source?: unknown; RW?: unknown }>;
  try {
    mounts = JSON.parse(r.stdout) as typeof mounts;
    if (!Array.isArray(mounts)) throw new Error('not a list');
  } catch (e) {
    throw new Error(`docker inspect ${container}: cannot read its mounts (${(e as Error).message})`);
  }
  return mounts.filter((m) => m.RW === true && typeof m.Source === 'string' && m.Source !== '').map((m) => m.Source as string);
}

/** The gateway's /healthz body (JSON), or undefined when it does not answer. */
export async function health(p: Project): Promise<Record<string, unknown> | undefined> {
  const url = healthUrl(p.gatewayIp);
  const r = await dockerResult(
    [
      'exec',
      p.gateway,
      'node',
      '-e',
      `fetch(${JSON.stringify(url)}).then(r => r.text()).then(t => process.stdout.write(t), () => process.exit(1))`,
    ],
    { timeoutMs: 10_000 },
  );
  if (r.exitCode !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Remove every container, then every network, labelled with the project. Returns what was removed. */
export async function down(p: Project, log: Log): Promise<string[]> {
  const removed: string[] = [];
  const containers = (await docker(['ps', '-a', '-q', ...projectFilter(p)])).split('\n').filter(Boolean);
  if (containers.length) {
    const names = (await docker(['inspect', '--format', '{{.Name}}', ...containers])).split('\n').map((n) => n.replace(/^\//, ''));
    // SIGTERM first: the gateway stops gracefully and flushes its audit log.
    await dockerResult(['stop', '-t', '10', ...containers], { timeoutMs: 60_000 });
    await docker(['rm', '-f', '-v', ...containers]);
    for (const n of names) log(`removed container ${n}`);
    removed.push(...names);
  }
  const networks = (await docker(['network', 'ls', '-q', ...projectFilter(p)])).split('\n').filter(Boolean);
  for (const id of networks) {
    const name = await docker(['network', 'inspect', '--format', '{{.Name}}', id]);
    await docker(['network', 'rm', id]);
    log(`removed network ${name}`);
    removed.push(name);
  }
  return removed;
}

export interface ContainerState {
  name: string;
  running: boolean;
  health?: string;
  status: string;
}

/** The project's containers and networks as Docker sees them. */
export async function state(p: Project): Promise<{ containers: ContainerState[]; networks: string[] }> {
  const ids = (await docker(['ps', '-a', '-q', ...projectFilter(p)])).split('\n').filter(Boolean);
  const containers: ContainerState[] = [];
  if (ids.length) {
    const fmt = '{{.Name}}\t{{.State.Running}}\t{{.State.Status}}\t{{if .State.Health}}{{.State.Health.Status}}{{end}}';
    for (const line of (await docker(['inspect', '--format', fmt, ...ids])).split('\n').filter(Boolean)) {
      const [name = '', running, status = '', h] = line.split('\t');
      containers.push({ name: name.replace(/^\//, ''), running: running === 'true', status, ...(h ? { health: h } : {}) });
    }
  }
  const networks = (await docker(['network', 'ls', '--format', '{{.Name}}', ...projectFilter(p)])).split('\n').filter(Boolean);
  return { containers: containers.sort((a, b) => a.name.localeCompare(b.name)), networks: networks.sort() };
}

export interface ProbeResult {
  id: string;
  ok: boolean;
  detail: string;
}

/** Run the probe set inside the sandbox (image/probe.ts piped to its node). */
export async function verify(
  p: Project,
  o: { allowedHost?: string; deniedHost?: string; timeoutMs?: number } = {},
): Promise<ProbeResult[]> {
  const script = await readFile(join(PACKAGE_ROOT, 'dist', 'image', 'probe.js'), 'utf8');
  const config = {
    gatewayIp: p.gatewayIp,
    proxyPort: PROXY_PORT,
    bridgeIp: p.gatewayIp.replace(/\.\d+$/, '.1'),
    allowedHost: o.allowedHost,
    deniedHost: o.deniedHost ?? 'verify-denied.codex-egress.invalid',
    timeoutMs: o.timeoutMs ?? 2000,
    readOnly: await readOnlyDestinations(p.sandbox),
  };
  // The probes make their own direct and proxied connections: Node >= 24 would send http.request through
  // the proxy variables when NODE_USE_ENV_PROXY is set, so it is unset for them.
  const r = await dockerResult(
    [
      'exec',
      '-i',
      '-e',
      `PROBE_CONFIG=${JSON.stringify(config)}`,
      p.sandbox,
      'env',
      '-u',
      'NODE_USE_ENV_PROXY',
      'node',
      '--input-type=module',
      '-',
    ],
    {
      input: script,
      timeoutMs: 60_000,
    },
  );
  // The probes run in the sandbox, which may be hostile by now (`verify` on a running appliance): a line
  // that is not a probe result is a failed probe, never a crash.
  const results = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l): ProbeResult => {
      try {
        const x = JSON.parse(l) as Partial<ProbeResult>;
        if (typeof x.id === 'string' && typeof x.ok === 'boolean' && typeof x.detail === 'string')
          return { id: x.id, ok: x.ok, detail: x.detail };
      } catch {
        /* below */
      }
      return { id: 'probe-output', ok: false, detail: `not a probe result: ${l.slice(0, 200)}` };
    });
  if (results.length === 0)
    return [{ id: 'probes-ran', ok: false, detail: `no probe output (exit ${r.exitCode}): ${r.stderr.trim().slice(-300)}` }];
  return results;
}

/** The first exact, portless allow rule of the effective allowlist: the host `verify` expects to reach. */
export async function firstAllowedHost(effectivePath: string): Promise<string | undefined> {
  const body = await readEffective(effectivePath);
  return body?.rules.map((r) => r.rule).find((r) => /^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(r));
}
