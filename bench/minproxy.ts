// The bench's `node-min` column: the runtime floor, NOT a product path. A minimal Node proxy with no checks
// at all (no allowlist, no address guard, no SNI check, no audit log, no limits, no timeouts): what the same
// Node runtime costs per CONNECT tunnel and per plain-HTTP request when it does nothing but relay.
//   CONNECT host:port  → net.connect, "200", pipe both ways
//   absolute-form HTTP → node:http server + a keep-alive http.Agent, streamed both ways
// Names are looked up once (a Map, no TTL), as every other proxy in the bench caches DNS.
// Usage: node dist/bench/minproxy.js '{"listen":"IP","port":PORT}'
import dns from 'node:dns';
import http from 'node:http';
import net from 'node:net';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { listen?: string; port?: number };

const cache = new Map<string, dns.LookupAddress[]>();
type Cb = (err: Error | null, address: string | dns.LookupAddress[], family?: number) => void;
function lookup(host: string, opts: { all?: boolean }, cb: Cb): void {
  const answer = (list: dns.LookupAddress[]) => (opts.all ? cb(null, list) : cb(null, list[0]!.address, list[0]!.family));
  const hit = cache.get(host);
  if (hit) return process.nextTick(answer, hit);
  dns.lookup(host, { family: 4, all: true }, (err, list) => {
    if (err) return cb(err, '');
    cache.set(host, list);
    answer(list);
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const server = http.createServer((req, res) => {
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    res.writeHead(400).end();
    return;
  }
  const up = http.request(
    {
      host: url.hostname,
      port: url.port || 80,
      path: url.pathname + url.search,
      method: req.method,
      headers: req.headers,
      agent,
      lookup: lookup as never,
    },
    (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    },
  );
  up.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
  req.pipe(up);
});

server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
  const i = (req.url ?? '').lastIndexOf(':');
  const host = (req.url ?? '').slice(0, i);
  const port = Number((req.url ?? '').slice(i + 1));
  const up = net.connect({ host, port, lookup: lookup as never }, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) up.write(head);
    up.pipe(client);
    client.pipe(up);
  });
  up.on('error', () => client.destroy());
  client.on('error', () => up.destroy());
  client.on('close', () => up.destroy());
  up.on('close', () => client.destroy());
});

server.listen(cfg.port ?? 3131, cfg.listen ?? '127.0.0.1', () => console.log('minproxy ready'));
