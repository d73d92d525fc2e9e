// The benchmark's origin servers, run inside the benchmark namespace on documentation addresses:
//   bulk  (TLS-looking): after the ClientHello and an 8-byte size (an application-data record), answers a
//         ServerHello and streams that many bytes, then closes.
//   conn  (TLS-looking): answers the ClientHello with a ServerHello and keeps the connection open.
//   http  plain HTTP/1.1 keep-alive: a 13-byte body for any request.
// Usage: node dist/bench/servers.js '{"bulk":"IP:PORT","conn":"IP:PORT","http":"IP:PORT"}'
import net from 'node:net';
import http from 'node:http';
import { helloLength, SERVER_HELLO } from './hello.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { bulk?: string; conn?: string; http?: string };
const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

const CHUNK = Buffer.alloc(256 * 1024, 0x61);

function bulk(s: net.Socket): void {
  let buf = Buffer.alloc(0);
  s.on('error', () => undefined);
  const onData = (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    const h = helloLength(buf);
    if (buf.length < h + 13) return;
    s.removeListener('data', onData);
    s.resume();
    s.write(SERVER_HELLO);
    let left = Number(buf.readBigUInt64BE(h + 5));
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  };
  s.on('data', onData);
}

const REPLY = SERVER_HELLO;
function conn(s: net.Socket): void {
  s.on('error', () => undefined);
  s.once('data', () => s.write(REPLY));
  s.on('data', () => undefined);
}

const listen = (server: net.Server, at: string) =>
  new Promise<void>((resolve, reject) => {
    const { host, port } = hostPort(at);
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => resolve());
  });

const BODY = Buffer.from('hello, world\n');
const servers: Promise<void>[] = [];
if (cfg.bulk) servers.push(listen(net.createServer(bulk), cfg.bulk));
if (cfg.conn) servers.push(listen(net.createServer(conn), cfg.conn));
if (cfg.http) {
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.maxHeadersCount = 100;
  servers.push(listen(server, cfg.http));
}
Promise.all(servers).then(
  () => process.stdout.write('servers ready\n'),
  (err: Error) => {
    process.stderr.write(`servers: ${err.message}\n`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => process.exit(0));
