// Hosts worth a second thought before they are allowed: each carries content anyone can write or
// tunnels traffic past the allowlist. `codex-egress allow` warns (never refuses) when a rule opens one
// of them. One entry per line: the host (a rule: exact, "*.x" subdomains, ".x" both) and why.
export interface RiskNote {
  host: string;
  why: string;
}

export const RISK_NOTES: readonly RiskNote[] = [
  // Any file of any public GitHub repository, also ones made a minute ago by whoever wants to reach the sandbox.
  { host: 'raw.githubusercontent.com', why: 'serves any file of any public GitHub repository (arbitrary user content)' },
  // Gists: anyone's pastes, readable without an account, writable with any GitHub token.
  { host: 'gist.github.com', why: "hosts anyone's gists (arbitrary user content; writable with any GitHub token)" },
  { host: 'gist.githubusercontent.com', why: "serves anyone's gists (arbitrary user content)" },
  // Pastebins: read and write text without an account, a ready channel to send data out.
  { host: '.pastebin.com', why: 'is a pastebin: anyone can post text there, so data can leave through it' },
  { host: '.paste.ee', why: 'is a pastebin: anyone can post text there, so data can leave through it' },
  { host: '.hastebin.com', why: 'is a pastebin: anyone can post text there, so data can leave through it' },
  { host: '.dpaste.org', why: 'is a pastebin: anyone can post text there, so data can leave through it' },
  // Anonymous file drops: one request uploads a file and returns a link to it.
  { host: '.transfer.sh', why: 'takes anonymous file uploads (data can leave through it)' },
  { host: '.file.io', why: 'takes anonymous file uploads (data can leave through it)' },
  { host: '.0x0.st', why: 'takes anonymous file uploads (data can leave through it)' },
  // Request catchers: whatever is sent is recorded for whoever made the URL.
  { host: '.webhook.site', why: 'records any request sent to it for whoever made the URL (data can leave through it)' },
  { host: '.pipedream.net', why: 'records any request sent to it for whoever made the endpoint (data can leave through it)' },
  // Storage buckets: the whole service, so everyone's buckets, including ones an attacker writes to.
  {
    host: '.s3.amazonaws.com',
    why: 'is Amazon S3: every bucket of every account, readable and writable by whoever holds its keys or a signed URL',
  },
  { host: '.storage.googleapis.com', why: 'is Google Cloud Storage: every bucket of every account (arbitrary content, and a way out)' },
  { host: '*.blob.core.windows.net', why: 'is Azure Blob Storage: every storage account (arbitrary content, and a way out)' },
  { host: '*.r2.dev', why: "is Cloudflare R2 public buckets: anyone's content" },
  // Tunnelling services: a public name in front of any machine, the attacker's included.
  { host: '.ngrok.io', why: 'is a tunnelling service: its names lead to any machine that runs a tunnel' },
  { host: '.ngrok-free.app', why: 'is a tunnelling service: its names lead to any machine that runs a tunnel' },
  { host: '.ngrok.app', why: 'is a tunnelling service: its names lead to any machine that runs a tunnel' },
  { host: '.trycloudflare.com', why: 'is a tunnelling service (Cloudflare quick tunnels): its names lead to any machine' },
  { host: '.loca.lt', why: 'is a tunnelling service (localtunnel): its names lead to any machine' },
  { host: '.serveo.net', why: 'is a tunnelling service: its names lead to any machine' },
  { host: '.lhr.life', why: 'is a tunnelling service (localhost.run): its names lead to any machine' },
  { host: '.bore.pub', why: 'is a tunnelling service: its ports lead to any machine' },
  // Code anyone deploys, under one shared name.
  { host: '*.workers.dev', why: "runs anyone's Cloudflare Workers: any behaviour, any relay" },
  // DNS over HTTPS: resolves any name outside the gateway's resolver, and its queries carry data out.
  { host: 'dns.google', why: 'answers DNS over HTTPS: any name resolved past the gateway, and queries that carry data out' },
  { host: '.cloudflare-dns.com', why: 'answers DNS over HTTPS: any name resolved past the gateway, and queries that carry data out' },
  { host: '.quad9.net', why: 'answers DNS over HTTPS: any name resolved past the gateway, and queries that carry data out' },
  { host: '.nextdns.io', why: 'answers DNS over HTTPS: any name resolved past the gateway, and queries that carry data out' },
  { host: 'doh.opendns.com', why: 'answers DNS over HTTPS: any name resolved past the gateway, and queries that carry data out' },
];
