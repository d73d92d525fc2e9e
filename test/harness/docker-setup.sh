#!/usr/bin/env bash
# Prepares a real Docker engine for the end-to-end test (test/docker.test.ts). Idempotent; CI calls it
# before `npm test`. Installs docker.io and debootstrap if missing, starts dockerd in the background if it
# is not answering, and builds the local base image once (debootstrap trixie + docker import; trixie ships
# Node 20), so image builds need no registry. The base image is cached: skipped when it already exists.
set -euo pipefail

BASE_IMAGE="${CODEX_EGRESS_TEST_BASE:-codex-egress-test-base:trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DEBIAN_FRONTEND=noninteractive
# The Debian engine is 20.10 (API 1.41); a newer docker client on PATH must speak that version.
export DOCKER_API_VERSION="${DOCKER_API_VERSION:-1.41}"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  # No registry mirror, no userland proxy for published ports; logs beside the pid file.
  nohup dockerd --userland-proxy=false >/var/log/codex-egress-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "docker-setup: dockerd did not start, see /var/log/codex-egress-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  dir="$(mktemp -d /tmp/codex-egress-base.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
  # What both images need, so that building them here downloads nothing: Node for the gateway and the
  # probes, iptables/ipset for the firewall, and the sandbox's common tools.
  debootstrap --variant=minbase \
    --include=nodejs,ca-certificates,iptables,ipset,iproute2,curl,git,tini \
    trixie "$dir" "$MIRROR" >/tmp/codex-egress-debootstrap.log 2>&1 \
    || { tail -20 /tmp/codex-egress-debootstrap.log >&2; exit 1; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import - "$BASE_IMAGE" >/dev/null
  echo "docker-setup: built $BASE_IMAGE"
fi
docker version --format 'docker-setup: engine {{.Server.Version}} (API {{.Server.APIVersion}}), base image '"$BASE_IMAGE"
