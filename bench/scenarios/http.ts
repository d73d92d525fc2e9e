// Plain HTTP through the proxy (absolute-form, keep-alive on both sides), measured with wrk.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HTTP } from '../env.js';
import { withCpu } from '../cpu.js';
import { OURS, type Row, type ScenarioResult } from '../table.js';
import { interleaved, medians, proxies, roundsNote, type Ctx } from './common.js';

export interface WrkResult {
  rps: number;
  /** Requests completed in the run. */
  requests: number;
  p50: number;
  p99: number;
  non2xx: number;
  socketErrors: string;
}

const toMs = (v: string, unit: string) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 1);

export function parseWrk(out: string): WrkResult {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([0-9.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  return {
    rps: Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1] ?? NaN),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    p50: pct('50'),
    p99: pct('99'),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: /Socket errors:.*$/m.exec(out)?.[0] ?? '',
  };
}

/** A wrk Lua script: through a proxy the request line carries the absolute URL; Host names the origin. */
export function wrkScript(dir: string, viaProxy: boolean): string {
  const path = join(dir, `wrk-${viaProxy ? 'proxy' : 'direct'}.lua`);
  writeFileSync(path, `wrk.path = "${viaProxy ? `http://${HTTP.name}/` : '/'}"\nwrk.headers["Host"] = "${HTTP.name}"\n`);
  return path;
}

export async function runWrk(ctx: Ctx, via: string, connections: number, seconds: number): Promise<WrkResult> {
  const direct = via === 'direct';
  const url = direct ? `http://${HTTP.ip}:${HTTP.port}/` : `http://${via}/`;
  const out = await ctx.env.run(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', wrkScript(ctx.env.dir, !direct), url],
    (seconds + 30) * 1000,
  );
  return parseWrk(out);
}

export async function http(ctx: Ctx): Promise<ScenarioResult> {
  const { env, preset, log } = ctx;
  const paths = [...proxies(env), { name: 'direct', via: 'direct' }];
  const columns = [OURS, 'direct', ...paths.filter((p) => p.name !== OURS && p.name !== 'direct').map((p) => p.name)];
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const c of [1, 64]) {
    const rounds = await interleaved(
      paths,
      preset,
      (p, ms) => runWrk(ctx, p.via, c, Math.max(1, Math.round(ms / 1000))),
      async (p) => {
        const { r, cpu: ms } = await withCpu(env, p.name, () => runWrk(ctx, p.via, c, preset.httpSeconds));
        log(`http c=${c} ${p.name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50} ms p99 ${r.p99} ms`);
        if (r.non2xx || r.socketErrors) notes.push(`c=${c} ${p.name}: ${r.non2xx} non-2xx responses ${r.socketErrors}`);
        return { r, cpu: p.name === 'direct' ? null : ms / (r.requests / 1000) };
      },
    );
    const pick = (f: (x: { r: WrkResult; cpu: number | null }) => number | null) => medians(rounds, f);
    rows.push(
      { metric: `requests/s, c=${c}`, unit: '/s', better: 'higher', values: pick((x) => x.r.rps) },
      { metric: `latency p50, c=${c}`, unit: 'ms', better: 'lower', values: pick((x) => x.r.p50) },
      { metric: `latency p99, c=${c}`, unit: 'ms', better: 'lower', values: pick((x) => x.r.p99) },
      { metric: `proxy CPU per 1,000 requests, c=${c}`, unit: 'ms', better: 'lower', values: pick((x) => x.cpu) },
    );
  }
  notes.unshift(
    `wrk -t1 -cN -d${preset.httpSeconds}s --latency, GET http://${HTTP.name}/ (13-byte body) through each proxy with keep-alive; "direct" is wrk straight to the origin (a Node http server, which bounds every column).`,
    roundsNote(preset),
    'Proxy CPU: user + system time of the proxy process (/proc/PID/stat) during the run, per 1,000 requests.',
  );
  return { id: 'http', title: 'Plain HTTP (keep-alive, small responses, wrk)', columns, rows, notes };
}
