// The read-only mounts of a running sandbox: what `verify` must prove read-only from inside
// (image/probe.ts, probe `read-only`). Both what the host asked for (the label it set at create) and
// what Docker reports as read-only: a path asked for read-only but mounted writable (or not at all)
// is still probed, and fails.
import { dockerResult } from './docker.js';
import { READ_ONLY_LABEL } from './args.js';

/** Paths from the label's JSON list; [] for anything else. Pure. */
export function labelPaths(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.startsWith('/')) : [];
  } catch {
    return [];
  }
}

/** The destinations (paths inside the container) to prove read-only; [] when the container is not there. */
export async function readOnlyDestinations(container: string): Promise<string[]> {
  const r = await dockerResult(['inspect', '--format', `{{json .Mounts}}\t{{index .Config.Labels "${READ_ONLY_LABEL}"}}`, container], {
    timeoutMs: 30_000,
  });
  if (r.exitCode !== 0) return [];
  const [mountsText = '', label = ''] = r.stdout.trim().split('\t');
  let fromDocker: string[] = [];
  try {
    const mounts = JSON.parse(mountsText) as Array<{ Destination?: unknown; RW?: unknown }>;
    if (Array.isArray(mounts))
      fromDocker = mounts.filter((m) => m.RW === false && typeof m.Destination === 'string').map((m) => m.Destination as string);
  } catch {
    /* only the label's */
  }
  return [...new Set([...labelPaths(label), ...fromDocker])];
}
