// The benchmark's own TCP load generator (tunnels), run inside the benchmark namespace.
//   bulk:    one tunnel, download `bytes` from the bulk server; prints MB/s.
//   connect: `concurrency` workers open tunnel → send ClientHello → wait for the first answer byte → close,
//            for `durationMs`; prints tunnels/s and the latency (connect start → first byte) p50/p99.
//   idle:    open `count` tunnels (ClientHello answered), print "ready", hold them for `holdMs`.
// "via" is "direct" (plain TCP to the target) or a proxy "IP:PORT" (HTTP CONNECT name:port).
// Usage: node dist/bench/loadgen.js '{"mode":"connect","via":"127.0.0.1:3128","target":"203.0.113.11:443","name":"conn.bench.example",...}'
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { clientHello, sizeRecord, SERVER_HELLO } from './hello.js';
import { summarize } from './stats.js';

interface Args {
  mode: 'bulk' | 'connect' | 'idle';
  via: string;
  target: string;
  name: string;
  bytes?: number;
  concurrency?: number;
  durationMs?: number;
  count?: number;
  holdMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};
const target = hostPort(args.target);
const HELLO = clientHello(args.name);

/** A socket connected to the target, directly or through the proxy's CONNECT tunnel. */
function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const direct = args.via === 'direct';
    const to = direct ? target : hostPort(args.via);
    const s = net.connect({ host: to.host, port: to.port, noDelay: true });
    const fail = (err: Error) => {
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    if (direct) {
      s.once('connect', () => {
        s.removeListener('error', fail);
        resolve(s);
      });
      return;
    }
    s.once('connect', () => s.write(`CONNECT ${args.name}:${target.port} HTTP/1.1\r\nHost: ${args.name}:${target.port}\r\n\r\n`));
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return head.length > 8192 ? fail(new Error('oversized CONNECT answer')) : undefined;
      s.removeListener('data', onData);
      s.removeListener('error', fail);
      s.pause();
      if (!/^HTTP\/1\.[01] 200/.test(head)) return fail(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`));
      if (end + 4 < head.length) s.unshift(Buffer.from(head.slice(end + 4), 'latin1'));
      resolve(s);
    };
    s.on('data', onData);
  });
}

function firstByte(s: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before answering')));
    s.resume();
  });
}

async function bulk(): Promise<object> {
  const bytes = args.bytes ?? 1 << 30;
  const t0 = performance.now();
  const s = await open();
  const size = sizeRecord(bytes);
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => (got += c.length));
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  s.resume();
  s.write(Buffer.concat([HELLO, size]));
  await done;
  const ms = performance.now() - t0;
  s.destroy();
  got -= SERVER_HELLO.length;
  if (got !== bytes) throw new Error(`got ${got} of ${bytes} bytes`);
  return { bytes: got, ms, MBps: got / 1e6 / (ms / 1000) };
}

async function connect(): Promise<object> {
  const c = args.concurrency ?? 1;
  const deadline = performance.now() + (args.durationMs ?? 5000);
  const lat: number[] = [];
  let errors = 0;
  let lastError = '';
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() < deadline) {
      const start = performance.now();
      try {
        const s = await open();
        const fb = firstByte(s);
        s.write(HELLO);
        await fb;
        lat.push(performance.now() - start);
        s.destroy();
      } catch (err) {
        errors++;
        lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  await Promise.all(Array.from({ length: c }, worker));
  const secs = (performance.now() - t0) / 1000;
  return { concurrency: c, tunnels: lat.length, perSec: lat.length / secs, errors, lastError, latencyMs: summarize(lat) };
}

async function idle(): Promise<void> {
  const count = args.count ?? 1000;
  const held: net.Socket[] = [];
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        const s = await open();
        const fb = firstByte(s);
        s.write(HELLO);
        await fb;
        s.on('error', () => undefined);
        held.push(s);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  process.stdout.write(`${JSON.stringify({ opened: held.length, errors })}\nready\n`);
  await new Promise((r) => setTimeout(r, args.holdMs ?? 60_000));
  for (const s of held) s.destroy();
}

const run = args.mode === 'bulk' ? bulk : args.mode === 'connect' ? connect : undefined;
if (run) {
  run().then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: Error) => {
      process.stderr.write(`loadgen: ${err.message}\n`);
      process.exit(1);
    },
  );
} else {
  idle().then(() => process.exit(0));
}
