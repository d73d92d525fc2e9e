// The read-only mounts of a running sandbox, as Docker reports them: what `verify` must prove read-only
// from inside (image/probe.ts, probe `read-only`).
import { dockerResult } from './docker.js';

/** The destinations (paths inside the container) of the container's read-only mounts; [] when none. */
export async function readOnlyDestinations(container: string): Promise<string[]> {
  const r = await dockerResult(['inspect', '--format', '{{json .Mounts}}', container], { timeoutMs: 30_000 });
  if (r.exitCode !== 0) return [];
  try {
    const mounts = JSON.parse(r.stdout) as Array<{ Destination?: unknown; RW?: unknown }>;
    if (!Array.isArray(mounts)) return [];
    return mounts.filter((m) => m.RW === false && typeof m.Destination === 'string').map((m) => m.Destination as string);
  } catch {
    return [];
  }
}
