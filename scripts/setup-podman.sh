#!/usr/bin/env bash
# Make podman usable for the container tests on a fresh Debian machine without a Docker engine,
# and build the local base image (no registry is reachable). Idempotent: each step is skipped
# when already done, and network steps are retried.
set -euo pipefail

BASE_IMAGE="${TABSHIP_TEST_BASE_IMAGE:-localhost/debian-python:bookworm}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

retry() { for attempt in 1 2 3; do "$@" && return 0; echo "attempt $attempt of: $* failed" >&2; sleep 5; done; return 1; }

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  retry $SUDO apt-get update -qq
  retry env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman runc debootstrap >/dev/null
fi

# A drop-in, so an existing containers.conf is left as it is.
conf=/etc/containers/containers.conf.d/50-tabship.conf
if [ ! -f "$conf" ]; then
  $SUDO mkdir -p "$(dirname "$conf")"
  printf '%s\n' '[containers]' 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]' \
    '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' | $SUDO tee "$conf" >/dev/null
fi

if ! podman image exists "$BASE_IMAGE"; then
  root=$(mktemp -d)
  trap '$SUDO rm -rf "$root"' EXIT
  retry $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" >/dev/null
  $SUDO tar -C "$root" -c . | podman import - "$BASE_IMAGE" >/dev/null
fi
echo "podman ready; base image $BASE_IMAGE"
