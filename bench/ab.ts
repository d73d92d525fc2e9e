// A/B of the proxy's CPU per 1,000 new tunnels (or plain HTTP requests) between two builds (two checkouts, each built), in one
// run on one machine: single bench runs vary by ±15 % on a shared machine, alternating rounds do not.
// Each build's proxy runs in its own process (bench/ab-proxy.ts); one TLS-looking origin serves both;
// bench/loadgen.ts opens tunnels (ClientHello → first answer byte → close) at the given concurrency,
// to A and B in turn, for `rounds` rounds after one warm-up each. The proxy's CPU comes from /proc.
// Usage (no root needed): node dist/bench/ab.js '{"a":"/work/main","b":"/work/wt-x","rounds":6,"concurrency":32,"seconds":4}'
// A side given as "node-min" runs bench/minproxy.ts (no checks, no log): the floor.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuMs } from './cpu.js';
import { parseWrk } from './scenarios/http.js';
import { GATEWAY_NODE_FLAGS } from '../proxy/runtime.js';

const here = dirname(fileURLToPath(import.meta.url));
const opts = { rounds: 6, concurrency: 32, seconds: 4, mode: 'connect', ...(JSON.parse(process.argv[2] ?? '{}') as object) } as {
  a: string;
  b: string;
  rounds: number;
  concurrency: number;
  seconds: number;
  /** connect: new tunnels (loadgen); http: keep-alive plain HTTP requests (wrk -t1, `concurrency` connections). */
  mode: 'connect' | 'http';
  /** Node flags for each side's process (e.g. a V8 heap setting). */
  aFlags?: string[];
  bFlags?: string[];
  /** false: start both sides without the gateway's Node flags (proxy/runtime.ts), which they get otherwise. */
  gatewayFlags?: boolean;
};
const NAME = 'conn.bench.example';
const ORIGIN_PORT = 24443;
const HTTP_PORT = 24480; // ab-proxy.ts allows this port too
const MIN_PORT = 24431;
const dir = mkdtempSync(join(tmpdir(), 'codex-egress-ab-'));
const children: ChildProcess[] = [];

function start(script: string, arg: object, flags: string[] = []): Promise<{ proc: ChildProcess; line: string }> {
  const proc = spawn(process.execPath, [...flags, join(here, script), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl !== -1) resolve({ proc, line: out.slice(0, nl) });
    });
    proc.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
    setTimeout(() => reject(new Error(`${script} did not start`)), 10_000).unref();
  });
}

type Load = { tunnels: number; errors: number; perSec: number; latencyMs: { p50: number; p99: number } };

/** Plain HTTP through the proxy with wrk (absolute-form request line, Host naming the origin); `tunnels` counts requests. */
function wrk(port: number, name: string, seconds: number): Promise<Load> {
  const script = join(dir, `wrk-${name}.lua`);
  writeFileSync(script, `wrk.path = "http://${name}:${HTTP_PORT}/"\nwrk.headers["Host"] = "${name}:${HTTP_PORT}"\n`);
  const args = ['-t1', `-c${opts.concurrency}`, `-d${seconds}s`, '--latency', '-s', script, `http://127.0.0.1:${port}/`];
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.once('error', reject);
    p.once('exit', (code) => {
      const r = parseWrk(out);
      if (code !== 0 || !Number.isFinite(r.requests) || !Number.isFinite(r.rps)) return reject(new Error(`wrk failed (${code}): ${out}`));
      resolve({ tunnels: r.requests, errors: r.non2xx, perSec: r.rps, latencyMs: { p50: r.p50, p99: r.p99 } });
    });
  });
}

const load = (port: number, name: string, seconds: number): Promise<Load> =>
  opts.mode === 'http' ? wrk(port, name, seconds) : tunnels(port, name, seconds);

/** New tunnels with bench/loadgen.ts: ClientHello, first answer byte, close. */
function tunnels(port: number, name: string, seconds: number): Promise<Load> {
  const arg = {
    mode: 'connect',
    via: `127.0.0.1:${port}`,
    target: `127.0.0.1:${ORIGIN_PORT}`,
    name,
    concurrency: opts.concurrency,
    durationMs: seconds * 1000,
  };
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(here, 'loadgen.js'), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.once('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`loadgen exited ${code}`);
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

try {
  const servers = spawn(
    process.execPath,
    [join(here, 'servers.js'), JSON.stringify({ conn: `127.0.0.1:${ORIGIN_PORT}`, http: `127.0.0.1:${HTTP_PORT}` })],
    {
      stdio: 'ignore',
    },
  );
  children.push(servers);
  await new Promise((r) => setTimeout(r, 500));
  const sides = [] as Array<{
    label: string;
    pid: number;
    port: number;
    name: string;
    cpu: number[];
    rate: number[];
    p50: number[];
    p99: number[];
  }>;
  for (const [label, root] of [
    ['A', opts.a],
    ['B', opts.b],
  ] as const) {
    // "node-min": the runtime's floor (bench/minproxy.ts) instead of a build.
    const { proc, line } =
      root === 'node-min'
        ? await start('minproxy.js', { listen: '127.0.0.1', port: MIN_PORT })
        : await start('ab-proxy.js', { root, name: NAME, log: join(dir, `${label}.jsonl`) }, [
            ...(opts.gatewayFlags === false ? [] : GATEWAY_NODE_FLAGS),
            ...((label === 'A' ? opts.aFlags : opts.bFlags) ?? []),
          ]);
    sides.push({
      label,
      pid: proc.pid!,
      port: root === 'node-min' ? MIN_PORT : Number(line),
      // node-min looks names up itself: it gets the origin's address
      name: root === 'node-min' ? '127.0.0.1' : NAME,
      cpu: [],
      rate: [],
      p50: [],
      p99: [],
    });
  }
  for (const s of sides) await load(s.port, s.name, 2); // warm-up
  for (let round = 0; round < opts.rounds; round++) {
    for (const s of round % 2 ? [...sides].reverse() : sides) {
      const before = cpuMs(s.pid);
      const r = await load(s.port, s.name, opts.seconds);
      if (r.errors) process.stderr.write(`${s.label}: ${r.errors} errors\n`);
      s.cpu.push(((cpuMs(s.pid) - before) * 1000) / r.tunnels);
      s.rate.push(r.perSec);
      s.p50.push(r.latencyMs.p50);
      s.p99.push(r.latencyMs.p99);
    }
  }
  const out = sides.map((s) => ({
    side: s.label,
    root: s.label === 'A' ? opts.a : opts.b,
    cpuMsPer1000: s.cpu.map(Math.round),
    medianCpu: Math.round(median(s.cpu)),
    medianPerSec: Math.round(median(s.rate)),
    medianP50ms: Number(median(s.p50).toFixed(3)),
    medianP99ms: Number(median(s.p99).toFixed(3)),
  }));
  process.stdout.write(
    `${JSON.stringify(out, null, 1)}\nB/A CPU per ${opts.mode === 'http' ? 'request' : 'tunnel'}: ${(out[1]!.medianCpu / out[0]!.medianCpu).toFixed(3)}\n`,
  );
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
