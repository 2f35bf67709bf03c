#!/usr/bin/env bash
# Installs what berth needs at run time and what its tests need, on a
# Debian machine of the kind berth targets. Idempotent.
set -euo pipefail
pkgs=(runc conmon containernetworking-plugins busybox-static iptables iproute2 util-linux)
# C headers containers/storage's btrfs driver and containers/image's gpgme
# signing need, so that a plain `go build ./...` and `go test ./...` (no
# build tags) work; berth's own builds use the Makefile's tags and link
# neither library.
pkgs+=(gcc libc6-dev pkg-config libbtrfs-dev libgpgme-dev)
# make deb: dpkg-shlibdeps finds the C library the binaries need.
pkgs+=(make dpkg-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Go modules, so the build and tests do not download lazily mid-run.
cd "$(dirname "$0")/.."
go mod download
