// What the Docker engine offers the sandbox beyond runc: its registered runtimes (gVisor's runsc, a GPU
// runtime such as nvidia) and the image's platform. Parsing is pure; the queries are one docker call each.
import { dockerResult } from './docker.js';

/** Runtimes whose name says they give containers a GPU (the NVIDIA Container Toolkit registers `nvidia`). */
export const GPU_RUNTIMES = ['nvidia', 'nvidia-container-runtime'];

export interface EngineRuntimes {
  names: string[];
  default: string;
}

/** `docker info --format '{{json .Runtimes}} {{.DefaultRuntime}}'` → names and the default. Pure. */
export function parseRuntimes(out: string): EngineRuntimes | undefined {
  const m = /^(\{.*\})\s+(\S*)\s*$/s.exec(out.trim());
  if (!m) return undefined;
  try {
    const o = JSON.parse(m[1]!) as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return undefined;
    return { names: Object.keys(o).sort(), default: m[2] ?? '' };
  } catch {
    return undefined;
  }
}

export async function engineRuntimes(): Promise<EngineRuntimes | undefined> {
  const r = await dockerResult(['info', '--format', '{{json .Runtimes}} {{.DefaultRuntime}}'], { timeoutMs: 30_000 });
  return r.exitCode === 0 ? parseRuntimes(r.stdout) : undefined;
}

/** A runtime name as docker takes it (no option, no path). */
export function checkRuntimeName(name: string): string | undefined {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)
    ? undefined
    : `--runtime ${JSON.stringify(name)}: a runtime name registered with the engine (letters, digits, ._-)`;
}

/** Is `name` registered? A sentence saying so, or why not and what to do. */
export function runtimeStatus(name: string, rt: EngineRuntimes | undefined): { ok: boolean; detail: string } {
  if (!rt) return { ok: false, detail: `cannot list the engine's runtimes (docker info failed)` };
  if (rt.names.includes(name))
    return { ok: true, detail: `runtime ${name} registered with the engine (registered: ${rt.names.join(', ')}; default ${rt.default})` };
  return {
    ok: false,
    detail: `runtime ${name} is not registered with the engine (registered: ${rt.names.join(', ')}): add it under "runtimes" in /etc/docker/daemon.json (e.g. {"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}}) and reload dockerd (SIGHUP or restart)`,
  };
}

/** The GPU runtime line of `doctor`: which GPU runtime the engine has, or that it has none. */
export function gpuRuntimeStatus(rt: EngineRuntimes | undefined): { present: boolean; detail: string } {
  if (!rt) return { present: false, detail: "unknown: cannot list the engine's runtimes" };
  const gpu = rt.names.filter((n) => GPU_RUNTIMES.includes(n));
  return gpu.length
    ? {
        present: true,
        detail: `GPU runtime ${gpu.join(', ')} registered${rt.default === gpu[0] ? ' (the default)' : ''}: --gpus can give the sandbox GPUs`,
      }
    : {
        present: false,
        detail: `no GPU runtime registered (runtimes: ${rt.names.join(', ')}): --gpus will fail; install the NVIDIA Container Toolkit for GPU runs`,
      };
}

/** --shm-size as docker takes it: a number with an optional unit b, k, m or g. */
export function checkShmSize(v: string): string | undefined {
  return /^[1-9][0-9]{0,11}[bkmg]?$/i.test(v) ? undefined : `--shm-size ${JSON.stringify(v)}: a size such as 2g or 512m`;
}

/** The image's platform (`linux/amd64`), or undefined when it is not there. */
export async function imagePlatform(image: string): Promise<string | undefined> {
  const r = await dockerResult(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', image], { timeoutMs: 30_000 });
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}
