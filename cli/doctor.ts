// `codex-egress doctor`: is this machine ready? Docker present, engine version, images, iptables/ipset
// usable in the gateway (with exactly the capabilities `up` gives it). Each failure is one line of cause
// and one line of fix (cli/doctor-advice.ts).
import { parse } from './args.js';
import { EXIT, IMAGE_HELP, imageOptions, imagesFrom, out, json } from './common.js';
import { dockerResult, exists } from '../image/docker.js';
import { printable } from './printable.js';
import { engineRuntimes, gpuRuntimeStatus, runtimeStatus } from '../image/engine.js';
import { codexBinCheck } from './runner-options.js';
import { resolve } from 'node:path';
import { clientAdvice, engineAdvice, imageAdvice, baseAdvice, engineRecentEnough, type Advice } from './doctor-advice.js';

export { engineRecentEnough };

/** The Dockerfiles' default base image (image/Dockerfile.*: ARG BASE_IMAGE). */
export const DEFAULT_BASE_IMAGE = 'node:26-trixie-slim';

export const DOCTOR_USAGE = `Usage: codex-egress doctor [options]

Checks: the docker client, the engine and its version (20.10 or newer), the two images (and, when one
is missing, the base image it is built from), and that iptables and ipset work inside the gateway image
with the capabilities "up" grants (NET_ADMIN, NET_RAW), in a throwaway container without network.
Each failure is printed with one line of cause and one line of fix.

Then the engine's GPU runtime (a note: none is fine without --gpus), and on request whether a
runtime is registered (--runtime NAME) and whether a host Codex binary fits the sandbox image
(--codex-bin PATH: a Linux binary for the image's architecture, or a script).

Options:
${IMAGE_HELP}
  --runtime NAME          check that this container runtime (e.g. runsc) is registered with the engine
  --codex-bin PATH        check this host Codex binary against the sandbox image
  --base IMAGE            the base image builds use (default ${DEFAULT_BASE_IMAGE}; as "build --base")
  --json                  print as JSON
  -h, --help              this help

Exit codes: 0 every check passed; 1 a check failed.`;

interface Check {
  id: string;
  ok: boolean;
  detail: string;
  cause?: string;
  fix?: string;
  /** Informational: reported, never a failure. */
  note?: boolean;
}

const check = (id: string, detail: string, advice?: Advice): Check => ({ id, ok: !advice, detail, ...(advice ?? {}) });

export async function doctorCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    ...imageOptions,
    base: { type: 'string' },
    json: { type: 'boolean' },
    runtime: { type: 'string' },
    'codex-bin': { type: 'string' },
  });
  const images = imagesFrom(v);
  const base = v.base ?? DEFAULT_BASE_IMAGE;
  const checks: Check[] = [];
  let engineUp = false;
  const client = await dockerResult(['version', '--format', '{{.Client.Version}}'], { timeoutMs: 20_000 }).catch((e: Error) => ({
    exitCode: 127,
    stdout: '',
    stderr: e.message,
  }));
  const clientVersion = client.stdout.split('\n')[0]?.trim() ?? '';
  const clientErr = client.stderr.trim() || (client.exitCode === 127 || client.exitCode === 1 ? 'ENOENT' : '');
  checks.push(
    check(
      'docker-client',
      clientVersion ? `docker ${clientVersion}` : 'no docker client',
      clientVersion ? undefined : clientAdvice(clientErr),
    ),
  );
  if (clientVersion) {
    const server = await dockerResult(['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}'], { timeoutMs: 20_000 }).catch(
      (e: Error) => ({ exitCode: 1, stdout: '', stderr: e.message }),
    );
    const [engine = '', api = ''] = server.exitCode === 0 ? server.stdout.trim().split(' ') : [];
    const advice = engineAdvice(server.stderr, engine || undefined);
    checks.push(check('docker-engine', engine ? `engine ${engine} (API ${api})` : 'no answer from the engine', advice));
    if (engine) {
      engineUp = true;
      let baseChecked: boolean | undefined;
      for (const [kind, image] of [
        ['gateway', images.gateway],
        ['codex', images.codex],
      ] as const) {
        const ok = await exists('image', image);
        if (!ok) baseChecked ??= await exists('image', base);
        checks.push(
          check(`image-${kind}`, `${image} ${ok ? 'present' : 'missing'}`, ok ? undefined : imageAdvice(image, !!baseChecked, base)),
        );
      }
      if (baseChecked === false) checks.push(check('base-image', `${base} missing`, baseAdvice(base)));
    }
  }
  if (checks.find((c) => c.id === 'image-gateway')?.ok) {
    const r = await dockerResult(
      [
        'run',
        '--rm',
        '--network',
        'none',
        '--cap-drop',
        'ALL',
        '--cap-add',
        'NET_ADMIN',
        '--cap-add',
        'NET_RAW',
        '--entrypoint',
        'sh',
        images.gateway,
        '-c',
        'iptables -S >/dev/null && iptables -N CODEX_EGRESS_DOCTOR && iptables -X CODEX_EGRESS_DOCTOR && ipset create codex-egress-doctor hash:ip && ipset destroy codex-egress-doctor && iptables --version && ipset --version',
      ],
      { timeoutMs: 60_000 },
    );
    checks.push(
      check(
        'gateway-firewall-tools',
        r.exitCode === 0 ? r.stdout.trim().split('\n').join(', ') : (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / '),
        r.exitCode === 0
          ? undefined
          : {
              cause: 'iptables or ipset does not work in the gateway image with NET_ADMIN',
              fix: 'load the kernel modules (modprobe ip_set ip_set_hash_ip) and use the iptables the host uses (nft or legacy)',
            },
      ),
    );
  }
  if (engineUp) {
    const rt = await engineRuntimes();
    const gpu = gpuRuntimeStatus(rt);
    checks.push({ id: 'gpu-runtime', ok: true, note: true, detail: gpu.detail });
    if (v.runtime !== undefined) {
      const r = runtimeStatus(v.runtime, rt);
      checks.push(
        check(
          'runtime',
          r.detail,
          r.ok
            ? undefined
            : {
                cause: `the runtime ${v.runtime} is not registered with the engine`,
                fix: 'register it in /etc/docker/daemon.json ("runtimes") and reload dockerd (README: A stronger boundary (--runtime))',
              },
        ),
      );
    }
  }
  if (v['codex-bin'] !== undefined) {
    const c = checks.find((x) => x.id === 'image-codex')?.ok
      ? await codexBinCheck(resolve(v['codex-bin']), images.codex).catch((e: Error) => ({ ok: false, detail: e.message }))
      : { ok: false, detail: `the sandbox image ${images.codex} is missing: cannot compare architectures` };
    checks.push(
      check(
        'codex-bin',
        c.detail,
        c.ok
          ? undefined
          : {
              cause: 'this file is not a Codex binary the sandbox image can run',
              fix: "use the Codex binary for Linux on the image's architecture (e.g. from the @openai/codex npm package's vendor/<triple>/codex/codex)",
            },
      ),
    );
  }
  const ok = checks.every((c) => c.ok);
  if (v.json) json({ ok, checks });
  else {
    for (const c of checks) {
      out(printable(`${c.note ? 'note' : c.ok ? 'ok  ' : 'FAIL'}  ${c.id.padEnd(22)} ${c.detail}`));
      if (!c.ok) {
        out(printable(`      cause: ${c.cause}`));
        out(printable(`      fix:   ${c.fix}`));
      }
    }
  }
  return ok ? EXIT.ok : EXIT.error;
}
