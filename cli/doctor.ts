// `codex-egress doctor`: is this machine ready? Docker present, engine version, images, iptables/ipset
// usable in the gateway (with exactly the capabilities `up` gives it), with advice for each failure.
import { parse } from './args.js';
import { EXIT, IMAGE_HELP, imageOptions, imagesFrom, out, json } from './common.js';
import { dockerResult, exists } from '../image/docker.js';
import { engineRuntimes, gpuRuntimeStatus, runtimeStatus } from '../image/engine.js';
import { codexBinCheck } from './runner-options.js';
import { resolve } from 'node:path';

export const DOCTOR_USAGE = `Usage: codex-egress doctor [options]

Checks: the docker client, the engine and its version (20.10 or newer), the two images, and that
iptables and ipset work inside the gateway image with the capabilities "up" grants (NET_ADMIN, NET_RAW),
in a throwaway container without network.

Then the engine's GPU runtime (a note: none is fine without --gpus), and on request whether a
runtime is registered (--runtime NAME) and whether a host Codex binary fits the sandbox image
(--codex-bin PATH: a Linux binary for the image's architecture, or a script).

Options:
${IMAGE_HELP}
  --runtime NAME          check that this container runtime (e.g. runsc) is registered with the engine
  --codex-bin PATH        check this host Codex binary against the sandbox image
  --json                  print as JSON
  -h, --help              this help

Exit codes: 0 every check passed; 1 a check failed.`;

interface Check {
  id: string;
  ok: boolean;
  detail: string;
  advice?: string;
  /** Informational: reported, never a failure. */
  note?: boolean;
}

/** "20.10.24+dfsg1" → at least 20.10? */
export function engineRecentEnough(version: string): boolean {
  const [major = 0, minor = 0] = version.split(/[.+-]/).map(Number);
  return major > 20 || (major === 20 && minor >= 10);
}

export async function doctorCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { ...imageOptions, json: { type: 'boolean' }, runtime: { type: 'string' }, 'codex-bin': { type: 'string' } });
  const images = imagesFrom(v);
  const checks: Check[] = [];
  const client = await dockerResult(['version', '--format', '{{.Client.Version}}'], { timeoutMs: 20_000 }).catch((e: Error) => ({ exitCode: 127, stdout: '', stderr: e.message }));
  const clientVersion = client.stdout.split('\n')[0]?.trim() ?? '';
  checks.push({ id: 'docker-client', ok: clientVersion !== '', detail: clientVersion ? `docker ${clientVersion}` : client.stderr.trim().slice(0, 200), advice: 'install Docker (Debian: apt-get install docker.io)' });
  const server = await dockerResult(['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}'], { timeoutMs: 20_000 }).catch((e: Error) => ({ exitCode: 1, stdout: '', stderr: e.message }));
  const [engine = '', api = ''] = server.exitCode === 0 ? server.stdout.trim().split(' ') : [];
  checks.push({
    id: 'docker-engine',
    ok: engine !== '' && engineRecentEnough(engine),
    detail: engine ? `engine ${engine} (API ${api})` : server.stderr.trim().split('\n').slice(-1)[0] ?? 'no answer',
    advice: engine ? 'upgrade the Docker engine to 20.10 or newer' : 'start the engine (dockerd, or systemctl start docker) and check you may use its socket; an old engine may need DOCKER_API_VERSION=1.41',
  });
  for (const [kind, image] of [['gateway', images.gateway], ['codex', images.codex]] as const) {
    const ok = engine !== '' && (await exists('image', image));
    checks.push({ id: `image-${kind}`, ok, detail: `${image} ${ok ? 'present' : 'missing'}`, advice: 'run "codex-egress build"' });
  }
  if (checks.find((c) => c.id === 'image-gateway')?.ok) {
    const r = await dockerResult(
      ['run', '--rm', '--network', 'none', '--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW', '--entrypoint', 'sh', images.gateway, '-c',
        'iptables -S >/dev/null && iptables -N CODEX_EGRESS_DOCTOR && iptables -X CODEX_EGRESS_DOCTOR && ipset create codex-egress-doctor hash:ip && ipset destroy codex-egress-doctor && iptables --version && ipset --version'],
      { timeoutMs: 60_000 },
    );
    checks.push({
      id: 'gateway-firewall-tools',
      ok: r.exitCode === 0,
      detail: r.exitCode === 0 ? r.stdout.trim().split('\n').join(', ') : (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / '),
      advice: 'the kernel needs netfilter and ip_set (modprobe ip_set ip_set_hash_ip; iptables-nft or -legacy as the host uses)',
    });
  }
  if (engine) {
    const rt = await engineRuntimes();
    const gpu = gpuRuntimeStatus(rt);
    checks.push({ id: 'gpu-runtime', ok: true, note: true, detail: gpu.detail });
    if (v.runtime !== undefined) {
      const r = runtimeStatus(v.runtime, rt);
      checks.push({ id: 'runtime', ok: r.ok, detail: r.detail, advice: 'README: A stronger boundary (--runtime)' });
    }
  }
  if (v['codex-bin'] !== undefined) {
    const c = checks.find((x) => x.id === 'image-codex')?.ok
      ? await codexBinCheck(resolve(v['codex-bin']), images.codex).catch((e: Error) => ({ ok: false, detail: e.message }))
      : { ok: false, detail: `the sandbox image ${images.codex} is missing: cannot compare architectures` };
    checks.push({ id: 'codex-bin', ok: c.ok, detail: c.detail, advice: 'the Codex binary for Linux on the image\'s architecture (e.g. from the @openai/codex npm package\'s vendor/<triple>/codex/codex)' });
  }
  const ok = checks.every((c) => c.ok);
  if (v.json) json({ ok, checks });
  else for (const c of checks) out(`${c.note ? 'note' : c.ok ? 'ok  ' : 'FAIL'}  ${c.id.padEnd(22)} ${c.detail}${c.ok || !c.advice ? '' : `\n      → ${c.advice}`}`);
  return ok ? EXIT.ok : EXIT.error;
}
