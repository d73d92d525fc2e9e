// `npm run bench`: codex-egress side by side with the direct path, squid, tinyproxy, dnsmasq and unbound,
// in one network namespace made for the run (deleted on exit and on Ctrl-C). Prints one Markdown table
// per scenario and writes everything to bench/results/*.json. Needs root (network namespaces).
//
//   node dist/bench/main.js [--smoke | --full] [--only tunnel,connect,...] [--no-peers] [--cpu-prof DIR] [--node PATH]
import { execa } from 'execa';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEnv } from './env.js';
import { ROOT } from '../test/harness/world.js';
import { renderTable, type ScenarioResult } from './table.js';
import { summary } from './summary.js';
import { PRESETS, type Ctx } from './scenarios/common.js';
import { memory } from './scenarios/memory.js';
import { tunnel } from './scenarios/tunnel.js';
import { connect } from './scenarios/connect.js';
import { http } from './scenarios/http.js';
import { dns } from './scenarios/dns.js';
import { firewall } from './scenarios/firewall.js';
import { scaling } from './scenarios/scaling.js';
import { transparent } from './scenarios/transparent.js';

// Memory first (fresh processes), firewall late (it restarts the gateway), scaling last (in-process).
const SCENARIOS = { memory, tunnel, connect, http, dns, transparent, firewall, scaling } as const;
type Id = keyof typeof SCENARIOS;

const USAGE = `Usage: npm run bench -- [--smoke | --full] [--only ${Object.keys(SCENARIOS).join(',')}] [--no-peers] [--cpu-prof DIR] [--node PATH]
  (default)   a practical run of a few minutes: short durations, 256 MiB tunnel downloads, 20 s mixed load
  --full      the issue's durations: 1 GiB downloads, 10 s per load point, 2-minute mixed load
  --smoke     about a minute, for CI: tiny durations, every scenario once
  --cpu-prof  run the gateway under node --cpu-prof, profiles written to DIR
  --node      the Node binary that runs the gateway and node-min (default: the gateway image's Node,
              installed by bench/setup.sh in bench/.node/, else the Node running the bench)`;

/** The gateway image's Node (its default base, node:26): bench/setup.sh unpacks it here. */
const IMAGE_NODE = join(ROOT, 'bench', '.node', 'package', 'bin', 'node');

async function version(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false, all: true });
  const lines = String(r.all ?? '').split('\n');
  return r.exitCode === 0 || r.all
    ? (lines.find((l) => /version \d+\.\d+/i.test(l)) ?? lines.find((l) => /\d+\.\d+/.test(l)) ?? '').trim()
    : 'not installed';
}

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      smoke: { type: 'boolean' },
      full: { type: 'boolean' },
      only: { type: 'string' },
      'no-peers': { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (it creates a network namespace)\n');
    return 1;
  }
  const preset = PRESETS[v.full ? 'full' : v.smoke ? 'smoke' : 'default'];
  const only = (v.only?.split(',').map((s) => s.trim()) ?? Object.keys(SCENARIOS)) as Id[];
  const unknown = only.filter((id) => !(id in SCENARIOS));
  if (unknown.length) {
    process.stderr.write(`bench: unknown scenario(s) ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  const started = new Date();
  const machine = {
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? '',
    memGB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    /** The Node that runs the gateway and node-min (--node; bench/setup.sh installs the gateway image's). */
    gatewayNode: '',
    loadavgBefore: os.loadavg(),
    note: 'shared machine: other jobs (test suites) may run at the same time',
  };
  const versions = {
    squid: await version('squid', ['-v']),
    tinyproxy: await version('tinyproxy', ['-v']),
    dnsmasq: await version('dnsmasq', ['--version']),
    unbound: await version('unbound', ['-V']),
    wrk: await version('wrk', ['-v']),
    dnsperf: await version('dnsperf', ['-h']),
  };
  const commit = (await execa('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, reject: false })).stdout;
  const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
  log(`preset ${preset.name}; scenarios ${only.join(', ')}; ${machine.cpus} × ${machine.cpu}; node ${machine.node}`);

  const node = v.node ?? (existsSync(IMAGE_NODE) ? IMAGE_NODE : process.execPath);
  const nodeVersion = (await execa(node, ['--version'], { reject: false })).stdout.trim();
  if (!/^v\d+/.test(nodeVersion)) {
    process.stderr.write(`bench: --node ${node}: not a Node binary\n`);
    return 2;
  }
  machine.gatewayNode = nodeVersion;
  log(`gateway and node-min run on node ${nodeVersion} (${node})`);
  const env = await createEnv({ peers: !v['no-peers'], node });
  const results: ScenarioResult[] = [];
  const errors: Record<string, string> = {};
  try {
    if (env.missing.length) log(`peers not installed (columns left out): ${env.missing.join(', ')} — see bench/setup.sh`);
    const nodeFlags = v['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', v['cpu-prof']] : [];
    await env.startGateway({ nodeFlags });
    const ctx: Ctx = { env, preset, log };
    for (const id of Object.keys(SCENARIOS) as Id[]) {
      if (!only.includes(id)) continue;
      log(`scenario ${id} …`);
      const t0 = Date.now();
      try {
        const r = await SCENARIOS[id](ctx);
        r.notes.push(`Scenario time: ${Math.round((Date.now() - t0) / 1000)} s.`);
        results.push(r);
        process.stdout.write(`\n${renderTable(r)}`);
      } catch (err) {
        errors[id] = (err as Error).stack ?? String(err);
        log(`scenario ${id} FAILED: ${(err as Error).message}`);
      }
      log(`scenario ${id}: ${Math.round((Date.now() - t0) / 1000)} s`);
      if (env.gateway.exited) {
        log('the gateway exited: restarting it');
        await env.startGateway({ nodeFlags });
      }
    }
  } finally {
    await env.close();
  }
  const out = {
    preset: preset.name,
    started: started.toISOString(),
    seconds: Math.round((Date.now() - started.getTime()) / 1000),
    commit,
    command: `npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: { ...machine, loadavgAfter: os.loadavg() },
    versions,
    missingPeers: env.missing,
    results,
    errors,
  };
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const file = join(dir, `${stamp}-${preset.name}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  // latest-*: complete runs only (an --only run would hide the other scenarios' figures).
  const latest = !v.only;
  if (latest) writeFileSync(join(dir, `latest-${preset.name}.json`), `${JSON.stringify(out, null, 2)}\n`);
  const sum = summary(out);
  process.stdout.write(`\n### Summary\n\n${sum}`);
  if (latest) writeFileSync(join(dir, `latest-${preset.name}.md`), `### Summary\n\n${sum}\n${results.map(renderTable).join('\n')}`);
  log(`results: ${file} (${out.seconds} s)`);
  return Object.keys(errors).length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
